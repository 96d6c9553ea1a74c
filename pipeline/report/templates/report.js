/* report.html behaviour: builds each list from the embedded JSON and filters it in place.
   Plain ES5-style JavaScript, no library, no network. Text goes in with textContent only,
   so nothing in the data can become markup. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var numberFormat = new Intl.NumberFormat("id-ID");

  var decimalFormats = {};

  function decimal(value, digits) {
    if (!decimalFormats[digits]) {
      decimalFormats[digits] = new Intl.NumberFormat("id-ID", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    }
    return decimalFormats[digits].format(value);
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function display(spec, value) {
    if (value === null || value === undefined) return "";
    if (spec.labels && Object.prototype.hasOwnProperty.call(spec.labels, value)) return spec.labels[value];
    if (typeof value === "number") {
      return spec.digits !== undefined ? decimal(value, spec.digits) : numberFormat.format(value);
    }
    return String(value);
  }

  function cellClass(spec, value) {
    var names = [];
    if (spec.num) names.push("num");
    if (spec.css) names.push(spec.css);
    if (spec.cls && value !== null && value !== undefined) names.push(spec.cls + "-" + value);
    return names.join(" ");
  }

  /* ---- table lists: one <tr> per row ---- */

  function tableHeader(columns) {
    var thead = make("thead");
    var hasGroups = columns.some(function (c) { return c.group; });
    if (hasGroups) {
      var groupRow = make("tr", "group");
      var i = 0;
      while (i < columns.length) {
        var group = columns[i].group || "";
        var span = 1;
        while (i + span < columns.length && (columns[i + span].group || "") === group) span++;
        var th = make("th", null, group);
        th.colSpan = span;
        groupRow.appendChild(th);
        i += span;
      }
      thead.appendChild(groupRow);
    }
    var row = make("tr");
    columns.forEach(function (c) {
      var th = make("th", [c.num ? "num" : "", c.css || ""].join(" ").trim() || null, c.label);
      if (c.title) th.title = c.title;
      row.appendChild(th);
    });
    thead.appendChild(row);
    return thead;
  }

  function buildTable(spec) {
    var index = {};
    spec.fields.forEach(function (key, i) { index[key] = i; });
    var table = make("table");
    table.appendChild(tableHeader(spec.columns));
    var tbody = make("tbody");
    var items = spec.rows.map(function (row) {
      var tr = make("tr");
      spec.columns.forEach(function (c) {
        var value = row[index[c.key]];
        var td = make("td", cellClass(c, value), display(c, value));
        // A side-by-side column is highlighted where it differs from its counterpart.
        if (c.compare && value !== null && value !== row[index[c.compare]]) td.classList.add("diff");
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
      return {
        node: tr,
        text: (spec.search || []).map(function (k) { return row[index[k]] || ""; }).join(" ").toLowerCase(),
        value: function (key) { return row[index[key]]; }
      };
    });
    table.appendChild(tbody);
    var wrap = make("div", "scroll");
    wrap.appendChild(table);
    return { node: wrap, items: items };
  }

  /* ---- duplicate clusters: one card per cluster, members side by side ---- */

  function evidenceLevel(spec, level) {
    var words = spec.evidenceLevels[level];
    return words ? words + " (" + level + ")" : level;
  }

  function clusterCard(spec, cluster) {
    var card = make("div", "cluster");
    card.appendChild(make("h4", null, cluster.title));
    var differs = {};
    cluster.diff.forEach(function (cell) { differs[cell[0] + ":" + cell[1]] = true; });
    var table = make("table");
    var head = make("tr");
    head.appendChild(make("th", null, "Kolom"));
    cluster.members.forEach(function (m) { head.appendChild(make("th", null, m)); });
    var thead = make("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = make("tbody");
    cluster.values.forEach(function (values, f) {
      var tr = make("tr");
      tr.appendChild(make("th", null, spec.fieldLabels[f]));
      values.forEach(function (value, i) {
        tr.appendChild(make("td", differs[f + ":" + i] ? "diff" : null, value === null ? "" : String(value)));
      });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    card.appendChild(table);
    cluster.evidence.forEach(function (pair) {
      card.appendChild(make("p", "note", pair.title));
      var ev = make("table", "evidence");
      var evHead = make("tr");
      ["Perbandingan", "Tingkat kecocokan", "Bobot"].forEach(function (t, i) {
        evHead.appendChild(make("th", i === 2 ? "num" : null, t));
      });
      ev.appendChild(evHead);
      pair.items.forEach(function (item) {
        var tr = make("tr");
        tr.appendChild(make("td", null, spec.evidenceFields[item[0]] || item[0]));
        tr.appendChild(make("td", null, evidenceLevel(spec, item[1])));
        var weight = item[2];
        tr.appendChild(make("td", "num " + (weight > 0 ? "w-pos" : weight < 0 ? "w-neg" : ""),
          (weight > 0 ? "+" : "") + decimal(weight, 1)));
        ev.appendChild(tr);
      });
      card.appendChild(ev);
    });
    return card;
  }

  function buildClusters(spec) {
    var wrap = make("div");
    var items = spec.rows.map(function (cluster) {
      var card = clusterCard(spec, cluster);
      wrap.appendChild(card);
      return {
        node: card,
        text: cluster.search.toLowerCase(),
        value: function (key) { return cluster[key]; }
      };
    });
    return { node: wrap, items: items };
  }

  /* ---- the toolbar: text search plus one drop-down per facet ---- */

  function facetSelect(facet, items) {
    var select = make("select");
    select.setAttribute("aria-label", facet.label);
    select.dataset.facet = facet.key;
    select.appendChild(new Option("Semua " + facet.label.toLowerCase(), ""));
    var seen = {};
    items.forEach(function (it) {
      var v = it.value(facet.key);
      if (v !== null && v !== undefined && v !== "") seen[v] = true;
    });
    var values = Object.keys(seen);
    if (facet.order) {
      values.sort(function (a, b) { return facet.order.indexOf(a) - facet.order.indexOf(b); });
    } else {
      values.sort();
    }
    values.forEach(function (v) { select.appendChild(new Option(display(facet, v), v)); });
    return select;
  }

  function mountList(container, spec) {
    var built = spec.kind === "clusters" ? buildClusters(spec) : buildTable(spec);
    var toolbar = make("div", "toolbar");
    var search = make("input");
    search.type = "search";
    search.placeholder = spec.placeholder || "Cari…";
    search.setAttribute("aria-label", "Cari");
    toolbar.appendChild(search);
    var selects = (spec.facets || []).map(function (facet) {
      var select = facetSelect(facet, built.items);
      toolbar.appendChild(select);
      return select;
    });
    var count = make("span", "count");
    toolbar.appendChild(count);

    function apply() {
      var query = search.value.trim().toLowerCase();
      var shown = 0;
      built.items.forEach(function (item) {
        var visible = !query || item.text.indexOf(query) !== -1;
        for (var i = 0; visible && i < selects.length; i++) {
          var wanted = selects[i].value;
          if (wanted && String(item.value(selects[i].dataset.facet)) !== wanted) visible = false;
        }
        item.node.hidden = !visible;
        if (visible) shown++;
      });
      count.textContent = numberFormat.format(shown) + " dari " + numberFormat.format(built.items.length) +
        " " + (spec.unit || "baris") + " ditampilkan";
    }

    search.addEventListener("input", apply);
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    container.appendChild(toolbar);
    if (built.items.length === 0) {
      container.appendChild(make("p", "empty", "Tidak ada data."));
    }
    container.appendChild(built.node);
    apply();
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-list]"), function (container) {
    var spec = DATA.lists[container.getAttribute("data-list")];
    if (spec) mountList(container, spec);
  });
})();
