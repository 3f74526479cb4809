# Property layouts for the event store (#14), measured with Python duckdb==2.0.0 (PyPI):
#   pip install duckdb==2.0.0 && N=5000000 python3 bench/probes/event_properties.py
# Results and the recommendation: bench/probes/event-properties.md
import duckdb, time, os, json, random
N = int(os.environ.get("N", "5000000"))
path = os.environ.get("DB", "/tmp/event_properties.duckdb")
for suffix in ["", ".wal"]:
    try: os.remove(path + suffix)
    except FileNotFoundError: pass
con = duckdb.connect(path, config={"threads": 2, "memory_limit": "1GB"})
t = time.time()
# Generate in SQL: 30 names, 200k users, props plan/country/browser/amount/path.
con.execute(f"""
CREATE TABLE gen AS SELECT
  i AS seq,
  'event_' || (hash(i) % 30)::VARCHAR AS name,
  'user_' || (hash(i * 7) % 200000)::VARCHAR AS distinct_id,
  TIMESTAMP '2026-01-01' + to_seconds((i * 0.5)::BIGINT) AS ts,
  (['free','starter','pro','enterprise'])[1 + (hash(i*3) % 4)::INT] AS plan,
  'C' || (hash(i*5) % 30)::VARCHAR AS country,
  (['chrome','firefox','safari','edge','opera','other'])[1 + (hash(i*11) % 6)::INT] AS browser,
  ((hash(i*13) % 10000) / 100.0)::DOUBLE AS amount,
  '/page/' || (hash(i*17) % 500)::VARCHAR AS path
FROM range({N}) r(i)
""")
print(f"generate {N}: {time.time()-t:.1f}s")
def timed(label, sql, reps=5):
    best = 1e9; r = None
    for _ in range(reps):
        t = time.time(); r = con.execute(sql).fetchall(); best = min(best, time.time()-t)
    print(f"  {label}: {best*1000:.1f} ms ({len(r)} rows)")
    return r
layouts = {
 "json": ("props JSON", "json_object('plan', plan, 'country', country, 'browser', browser, 'amount', amount, 'path', path)",
          "props->>'$.plan'", "props->>'$.country'", "(props->>'$.amount')::DOUBLE"),
 "varchar_json": ("props VARCHAR", "json_object('plan', plan, 'country', country, 'browser', browser, 'amount', amount, 'path', path)::VARCHAR",
          "json_extract_string(props, '$.plan')", "json_extract_string(props, '$.country')", "json_extract(props, '$.amount')::DOUBLE"),
 "map": ("props MAP(VARCHAR, VARCHAR)", "MAP {'plan': plan, 'country': country, 'browser': browser, 'amount': amount::VARCHAR, 'path': path}",
          "props['plan']", "props['country']", "props['amount']::DOUBLE"),
 "variant": ("props VARIANT", "{'plan': plan, 'country': country, 'browser': browser, 'amount': amount, 'path': path}::VARIANT",
          "variant_extract(props, 'plan')::VARCHAR", "variant_extract(props, 'country')::VARCHAR", "variant_extract(props, 'amount')::DOUBLE"),
 "hot": ("p_plan VARCHAR, p_country VARCHAR, p_browser VARCHAR, p_amount DOUBLE, p_path VARCHAR, props_rest JSON", "plan, country, browser, amount, path, NULL",
          "p_plan", "p_country", "p_amount"),
}
for name, (cols, expr, plan, country, amount) in [(k, v) for k, v in layouts.items() if k in os.environ.get('ONLY', k)]:
    con.execute(f"DROP TABLE IF EXISTS ev_{name}")
    con.execute(f"CREATE TABLE ev_{name} (uuid UUID, name VARCHAR, distinct_id VARCHAR, ts TIMESTAMP, {cols})")
    t = time.time()
    con.execute(f"INSERT INTO ev_{name} SELECT uuid(), name, distinct_id, ts, {expr} FROM gen ORDER BY seq")
    con.execute("CHECKPOINT")
    ins = time.time()-t
    size = con.execute(f"SELECT count(DISTINCT block_id) * 262144 FROM pragma_storage_info('ev_{name}') WHERE block_id >= 0").fetchone()[0]
    print(f"{name}: insert {ins:.1f}s, compressed {size/1e6:.0f} MB")
    lo, hi = "TIMESTAMP '2026-01-10'", "TIMESTAMP '2026-01-25'"
    timed("trend 15d count by day x plan, name filter", f"SELECT date_trunc('day', ts) d, {plan} p, count(*) FROM ev_{name} WHERE name='event_7' AND ts >= {lo} AND ts < {hi} GROUP BY ALL")
    timed("trend + property filter country=C3, uniques", f"SELECT date_trunc('day', ts) d, {plan} p, count(DISTINCT distinct_id) FROM ev_{name} WHERE name='event_7' AND {country}='C3' AND ts >= {lo} AND ts < {hi} GROUP BY ALL")
    timed("sum of numeric prop by day, all time", f"SELECT date_trunc('day', ts) d, sum({amount}) FROM ev_{name} WHERE name='event_3' GROUP BY ALL")
    timed("breakdown all events by country, all time", f"SELECT {country}, count(*) FROM ev_{name} GROUP BY ALL")
