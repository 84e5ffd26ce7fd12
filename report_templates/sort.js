/* Click a column header to sort; a second click reverses. Without this script the table reads the same. */
(function () {
  "use strict";

  function sortKey(row, column, numeric) {
    var cell = row.cells[column];
    if (!cell) return numeric ? -Infinity : "";
    var value = cell.getAttribute("data-sort-value");
    if (value === null) value = cell.textContent.trim();
    if (!numeric) return value.toLowerCase();
    var number = parseFloat(value);
    return isNaN(number) ? -Infinity : number;
  }

  function sortTable(table, header, column) {
    var numeric = header.getAttribute("data-sort") === "num";
    var current = header.getAttribute("aria-sort");
    var ascending = current ? current !== "ascending" : !numeric;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a, column, numeric);
      var y = sortKey(b, column, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      if (!header.hasAttribute("data-sort")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.title = "Sort by this column";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", function () { sortTable(table, header, column); });
    });
  });
})();
