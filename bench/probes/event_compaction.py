# Does rewriting settled weeks of events sorted by (org, name, ts) make the event questions
# faster, and what does the rewrite cost? (#15) Python duckdb==2.0.0, bench-shaped data:
# 8 weeks, 30 names (10 % view_product, 4 % add_to_cart, 2 % purchase, the rest 27 names).
#   N=4000000 python3 bench/probes/event_compaction.py
import duckdb, time, os, statistics
N=int(os.environ.get("N","4000000")); path=os.environ.get("DB","/tmp/probe/ec.duckdb")
for s in ["",".wal"]:
    try: os.remove(path+s)
    except FileNotFoundError: pass
con=duckdb.connect(path, config={"threads":2,"memory_limit":"1GB","checkpoint_threshold":"64MB"})
con.execute("""CREATE TABLE events (org_id BIGINT NOT NULL, uuid UUID NOT NULL, name VARCHAR NOT NULL,
 distinct_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, session_id VARCHAR, props VARIANT, ip VARCHAR,
 user_agent VARCHAR, received_at TIMESTAMP NOT NULL)""")
con.execute("CREATE TABLE person_aliases (org_id BIGINT, distinct_id VARCHAR, person_key VARCHAR)")
END="TIMESTAMP '2026-11-30'"
t=time.time()
# Insert in time order, in groups, as the writer does (each group its own transaction).
G=200000
for k in range(0,N,G):
    con.execute(f"""INSERT INTO events SELECT 1, uuid(),
      CASE WHEN h<10 THEN 'view_product' WHEN h<14 THEN 'add_to_cart' WHEN h<16 THEN 'purchase'
           ELSE 'event_'||lpad(((hash(i*3)%27))::VARCHAR,2,'0') END,
      'u'||(hash(i*7)%200000)::VARCHAR,
      {END} - INTERVAL 56 DAY + to_microseconds((i*(56*86400e6/{N}))::BIGINT), NULL,
      ('{{"plan":"'||(['free','starter','pro','enterprise'])[1+(hash(i*5)%4)::INT]||'","country":"c'||(hash(i*11)%30)::VARCHAR||'","amount":'||((hash(i*13)%10000)/100.0)::VARCHAR||'}}')::JSON::VARIANT,
      NULL, NULL, now()::TIMESTAMP
      FROM (SELECT i, hash(i)%100 AS h FROM range({k},{min(k+G,N)}) r(i))""")
con.execute("CHECKPOINT")
print(f"load {N} events: {time.time()-t:.1f}s")
E1=f"""WITH ev AS (SELECT e.ts, coalesce(pa.person_key, e.distinct_id) person, variant_extract(e.props,'plan')::VARCHAR bd
 FROM events e LEFT JOIN person_aliases pa ON pa.org_id=e.org_id AND pa.distinct_id=e.distinct_id
 WHERE e.org_id=1 AND e.ts >= {END} - INTERVAL 30 DAY AND e.ts < {END} AND e.name='event_03')
 SELECT date_trunc('day',ts), bd, count(DISTINCT person) FROM ev GROUP BY ALL ORDER BY 1,2"""
E2=f"""SELECT coalesce(pa.person_key, e.distinct_id) unit, epoch_us(e.ts),
 ((CASE WHEN name='view_product' THEN 1 ELSE 0 END)+(CASE WHEN name='add_to_cart' THEN 2 ELSE 0 END)+(CASE WHEN name='purchase' THEN 4 ELSE 0 END))::INTEGER
 FROM events e LEFT JOIN person_aliases pa ON pa.org_id=e.org_id AND pa.distinct_id=e.distinct_id
 WHERE e.org_id=1 AND e.ts >= {END} - INTERVAL 30 DAY AND e.ts < {END}
   AND (name='view_product' OR name='add_to_cart' OR name='purchase') ORDER BY 1,2,3 DESC"""
def timeit(label):
    for q,n in [(E1,"E1"),(E2,"E2")]:
        con.execute(q).fetchall()
        xs=[]
        for _ in range(7):
            s=time.time(); con.execute(q).fetchall(); xs.append((time.time()-s)*1e3)
        print(f"{label} {n}: p50 {statistics.median(xs):.1f} ms")
    print(label, "size", con.execute("select database_size, used_blocks, free_blocks from pragma_database_size()").fetchone())
timeit("time order")
# Rewrite each settled week (Monday to Monday) sorted by (org, name, ts), one transaction each.
weeks=con.execute(f"SELECT DISTINCT date_trunc('week', ts) w FROM events ORDER BY 1").fetchall()
tot=0
for (w,) in weeks:
    s=time.time(); con.execute("BEGIN")
    con.execute("CREATE OR REPLACE TEMP TABLE c AS SELECT * FROM events WHERE ts >= ? AND ts < ? + INTERVAL 7 DAY",[w,w])
    con.execute("DELETE FROM events WHERE ts >= ? AND ts < ? + INTERVAL 7 DAY",[w,w])
    con.execute("INSERT INTO events SELECT * FROM c ORDER BY org_id, name, ts")
    con.execute("COMMIT")
    if os.environ.get("CKPT_EACH"): con.execute("CHECKPOINT")
    d=time.time()-s; tot+=d
print(f"rewrite {len(weeks)} weeks: {tot:.1f}s ({N/tot/1000:.0f} k events/s)")
s=time.time(); con.execute("CHECKPOINT"); print(f"checkpoint after: {time.time()-s:.1f}s")
timeit("sorted by (org, name, ts) per week")
