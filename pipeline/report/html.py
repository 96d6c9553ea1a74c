"""report.html: a first plain, self-contained report in Bahasa Indonesia."""

from __future__ import annotations

import html
from pathlib import Path


def render_report(work_dir: Path, summary: dict) -> str:
    rec = summary["reconciliation"]
    rows = "".join(
        f"<tr><td>{html.escape(code)}</td>" + "".join(f"<td>{counts.get(a, 0):,}</td>" for a in ("exclude", "review", "warn")) + "</tr>"
        for code, counts in summary["anomalies_by_code"].items()
    )
    return f"""<!doctype html><html lang="id"><head><meta charset="utf-8"><title>Laporan verval</title></head>
<body><h1>Laporan verifikasi dan validasi</h1>
<p>Baris masuk {rec['rows_in']:,}; terverifikasi {rec['verified']:,}; perlu diperiksa {rec['review']:,};
dikeluarkan {rec['excluded']:,}; karantina {rec['quarantined']:,}; jumlah {rec['sum']:,}.</p>
<table><tr><th>Kode</th><th>dikeluarkan</th><th>diperiksa</th><th>peringatan</th></tr>{rows}</table>
</body></html>"""
