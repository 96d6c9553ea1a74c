/* Status page behaviour: region pickers, the query, the answer and the objection form.
   Plain JavaScript, no library; it talks only to its own server (POST, so names and NIKs
   never appear in a URL). Text goes in with textContent only. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("status-data").textContent);
  var LEVELS = ["provinsi", "kabupaten", "kecamatan", "desa"];
  var form = document.getElementById("ask");
  var message = document.getElementById("pesan");
  var results = document.getElementById("hasil");

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function say(text, isError) {
    message.hidden = !text;
    message.className = isError ? "message error" : "message";
    message.textContent = text || "";
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (payload) {
        if (!response.ok) throw new Error(payload.pesan || "Terjadi kesalahan. Coba lagi.");
        return payload;
      });
    });
  }

  /* ---- region pickers: each level loads the next from /api/wilayah ---- */

  function select(level) { return document.getElementById(level); }

  function reset(fromIndex) {
    for (var i = fromIndex; i < LEVELS.length; i++) {
      var s = select(LEVELS[i]);
      while (s.options.length > 1) s.remove(1);
      s.disabled = true;
    }
  }

  function fill(level, parent) {
    var url = "/api/wilayah" + (parent ? "?induk=" + encodeURIComponent(parent) : "");
    return fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (items) {
      var s = select(level);
      items.forEach(function (item) {
        var option = make("option", null, item.nama);
        option.value = item.kode;
        s.appendChild(option);
      });
      s.disabled = false;
      s.dataset.loaded = "1";
    });
  }

  LEVELS.forEach(function (level, i) {
    select(level).addEventListener("change", function () {
      reset(i + 1);
      var value = select(level).value;
      if (value && i + 1 < LEVELS.length) fill(LEVELS[i + 1], value);
    });
  });

  function way() {
    var checked = form.querySelector("input[name=cara]:checked");
    return checked ? checked.value : "wilayah";
  }

  Array.prototype.forEach.call(form.querySelectorAll("input[name=cara]"), function (radio) {
    radio.addEventListener("change", function () {
      document.getElementById("by-region").hidden = way() !== "wilayah";
      document.getElementById("by-nik").hidden = way() !== "nik";
    });
  });

  /* ---- the answer ---- */

  function objectionForm(answer, box) {
    var choices = DATA.kategori.filter(function (k) { return k.statuses.indexOf(answer.status) >= 0; });
    if (!answer.handle || !choices.length) return;
    var details = make("details", "objection");
    details.appendChild(make("summary", null, "Status ini keliru? Ajukan tanggapan"));
    var f = make("form", "ask");
    var label = make("label", null, "Jenis tanggapan");
    var kind = make("select");
    kind.name = "kategori";
    choices.forEach(function (k) {
      var option = make("option", null, k.label);
      option.value = k.kode;
      kind.appendChild(option);
    });
    var reasonLabel = make("label", null, "Alasan singkat (tanpa NIK)");
    var reason = make("textarea");
    reason.name = "alasan";
    reason.maxLength = DATA.max_alasan;
    var send = make("button", null, "Kirim tanggapan");
    send.type = "submit";
    var done = make("p", "note");
    f.appendChild(label); f.appendChild(kind); f.appendChild(reasonLabel); f.appendChild(reason);
    f.appendChild(make("p")).appendChild(send);
    f.appendChild(done);
    f.addEventListener("submit", function (event) {
      event.preventDefault();
      send.disabled = true;
      post("/api/tanggapan", { handle: answer.handle, kategori: kind.value, alasan: reason.value }).then(function (receipt) {
        done.textContent = receipt.pesan + " ";
        done.appendChild(make("span", "receipt", receipt.nomor));
        f.dataset.sent = receipt.nomor;
      }).catch(function (error) {
        send.disabled = false;
        done.textContent = error.message;
      });
    });
    details.appendChild(f);
    box.appendChild(details);
  }

  function showAnswer(answer) {
    var box = make("div", "answer " + answer.status);
    box.dataset.status = answer.status;
    if (answer.nama) box.appendChild(make("div", "who", "Nama: " + answer.nama));
    box.appendChild(make("div", "label", answer.status_label + (answer.reason_label ? ": " + answer.reason_label : "")));
    box.appendChild(make("p", null, answer.keterangan));
    box.appendChild(make("p", "note", "Putaran per " + answer.round_date));
    objectionForm(answer, box);
    results.appendChild(box);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    say("");
    while (results.firstChild) results.removeChild(results.firstChild);
    var body = { cara: way(), nama: document.getElementById("nama").value };
    if (body.cara === "nik") body.nik = document.getElementById("nik").value;
    else body.desa = select("desa").value;
    var button = document.getElementById("cari");
    button.disabled = true;
    post("/api/cek", body).then(function (payload) {
      payload.hasil.forEach(showAnswer);
      if (payload.lebih) say("Ada lebih banyak orang dengan nama ini di desa tersebut: cari dengan NIK.", false);
      results.dataset.done = String(Number(results.dataset.done || 0) + 1);
    }).catch(function (error) {
      say(error.message, true);
      results.dataset.done = String(Number(results.dataset.done || 0) + 1);
    }).then(function () { button.disabled = false; });
  });

  fill("provinsi", "");
})();
