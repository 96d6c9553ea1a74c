/* monev.html behaviour: region pickers, one trend chart per indicator (inline SVG built
   here), the per-kabupaten table and its CSV export. No library, no network. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("monev-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var numberFormat = new Intl.NumberFormat("id-ID", { maximumFractionDigits: 2 });
  var pickProvince = document.getElementById("pilih-provinsi");
  var pickKab = document.getElementById("pilih-kabupaten");
  var kabById = {};
  var provinceName = {};
  DATA.kabupaten.forEach(function (k) { kabById[k.kode] = k; });
  DATA.provinces.forEach(function (p) { provinceName[p.kode] = p.nama; });
  var countIndex = {};
  DATA.counts.forEach(function (c, i) { countIndex[c] = i + 2; });

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attributes) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attributes || {}).forEach(function (k) { node.setAttribute(k, attributes[k]); });
    return node;
  }

  function value(spec, sums) {
    if (spec.ratio) {
      var bottom = sums[spec.ratio[1]];
      return bottom ? sums[spec.ratio[0]] / bottom * spec.scale : null;
    }
    return sums[spec.key];
  }

  function selectedRows() {
    var kab = pickKab.value, province = pickProvince.value;
    return DATA.rows.filter(function (row) {
      if (kab) return row[1] === kab;
      if (province) return kabById[row[1]] && kabById[row[1]].prov === province;
      return true;
    });
  }

  function sumsPerRound(rows) {
    var perRound = {};
    DATA.rounds.forEach(function (r) {
      perRound[r] = {};
      DATA.counts.forEach(function (c) { perRound[r][c] = 0; });
    });
    rows.forEach(function (row) {
      DATA.counts.forEach(function (c) { perRound[row[0]][c] += row[countIndex[c]]; });
    });
    return perRound;
  }

  function lineChart(spec, values) {
    var width = 300, height = 150, left = 52, right = 10, top = 12, bottom = 30;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                             "class": "trend", "data-key": spec.key });
    var numbers = values.filter(function (v) { return v !== null; });
    var highest = Math.max.apply(null, numbers.concat([1]));
    var step = values.length > 1 ? (width - left - right) / (values.length - 1) : 0;
    function x(i) { return left + (values.length > 1 ? i * step : (width - left - right) / 2); }
    function y(v) { return top + (height - top - bottom) * (1 - v / highest); }
    chart.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: "#b8c0cc" }));
    var topLabel = svg("text", { x: left - 4, y: top + 4, "text-anchor": "end", "class": "muted" });
    topLabel.textContent = numberFormat.format(highest);
    chart.appendChild(topLabel);
    var points = [];
    values.forEach(function (v, i) {
      var label = svg("text", { x: x(i), y: height - 10, "text-anchor": "middle", "class": "muted" });
      label.textContent = DATA.rounds[i];
      chart.appendChild(label);
      if (v === null) return;
      points.push(x(i).toFixed(1) + "," + y(v).toFixed(1));
      var dot = svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3, fill: "#17324d" });
      var title = svg("title");
      title.textContent = DATA.rounds[i] + ": " + numberFormat.format(v);
      dot.appendChild(title);
      chart.appendChild(dot);
    });
    chart.insertBefore(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#17324d", "stroke-width": 2 }),
                       chart.firstChild);
    return chart;
  }

  function drawCharts() {
    var perRound = sumsPerRound(selectedRows());
    var grid = document.getElementById("charts");
    while (grid.firstChild) grid.removeChild(grid.firstChild);
    DATA.indicators.forEach(function (spec) {
      var figure = make("figure");
      figure.appendChild(make("figcaption", null, spec.label));
      figure.appendChild(lineChart(spec, DATA.rounds.map(function (r) { return value(spec, perRound[r]); })));
      grid.appendChild(figure);
    });
    var label = pickKab.value ? kabById[pickKab.value].nama : (pickProvince.value ? provinceName[pickProvince.value] : "Nasional");
    document.getElementById("wilayah-terpilih").textContent = label;
  }

  /* ---- the table: one row per (round, kabupaten), filtered like the charts ---- */

  var HEADERS = ["putaran", "kode_kabupaten", "kabupaten_kota", "provinsi"].concat(DATA.indicators.map(function (s) { return s.key; }));

  function tableRows() {
    return selectedRows().map(function (row) {
      var sums = {};
      DATA.counts.forEach(function (c) { sums[c] = row[countIndex[c]]; });
      var kab = kabById[row[1]] || { nama: row[1], prov: "" };
      return [row[0], row[1], kab.nama, provinceName[kab.prov] || ""].concat(DATA.indicators.map(function (spec) {
        var v = value(spec, sums);
        return v === null ? "" : (spec.ratio ? Math.round(v * 100) / 100 : v);
      }));
    });
  }

  function drawTable() {
    var table = document.getElementById("region-table");
    var head = table.tHead, body = table.tBodies[0];
    while (head.firstChild) head.removeChild(head.firstChild);
    while (body.firstChild) body.removeChild(body.firstChild);
    var tr = make("tr");
    ["Putaran", "Kode", "Kabupaten/kota", "Provinsi"].concat(DATA.indicators.map(function (s) { return s.label; })).forEach(function (h, i) {
      tr.appendChild(make("th", i >= 4 ? "num" : null, h));
    });
    head.appendChild(tr);
    var rows = tableRows();
    rows.forEach(function (row) {
      var line = make("tr");
      row.forEach(function (v, i) {
        line.appendChild(make("td", i >= 4 ? "num" : null, typeof v === "number" ? numberFormat.format(v) : v));
      });
      body.appendChild(line);
    });
    document.getElementById("baris-tabel").textContent = numberFormat.format(rows.length) + " baris";
  }

  function csvCell(v) {
    var text = String(v);
    if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;  /* never a formula in a spreadsheet */
    return /[",\n;]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function csv() {
    return [HEADERS].concat(tableRows()).map(function (row) { return row.map(csvCell).join(","); }).join("\n") + "\n";
  }

  document.getElementById("unduh-csv").addEventListener("click", function () {
    var blob = new Blob(["\ufeff" + csv()], { type: "text/csv;charset=utf-8" });
    var link = make("a");
    link.href = URL.createObjectURL(blob);
    link.download = "monev.csv";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  });

  /* ---- pickers ---- */

  DATA.provinces.forEach(function (p) {
    var option = make("option", null, p.nama);
    option.value = p.kode;
    pickProvince.appendChild(option);
  });

  function fillKabupaten() {
    while (pickKab.options.length > 1) pickKab.remove(1);
    DATA.kabupaten.forEach(function (k) {
      if (pickProvince.value && k.prov !== pickProvince.value) return;
      var option = make("option", null, k.nama);
      option.value = k.kode;
      pickKab.appendChild(option);
    });
  }

  function redraw() { drawCharts(); drawTable(); }
  pickProvince.addEventListener("change", function () { fillKabupaten(); redraw(); });
  pickKab.addEventListener("change", redraw);
  fillKabupaten();
  redraw();
})();
