# The event writer's transaction cycle in Python duckdb==2.0.0 (#15): groups of G events staged
# (VARCHAR props), dedup, moved with props::JSON::VARIANT, committed; then a final CHECKPOINT.
#   N=2000000 G=16000 CKPT=16MB [EVERY=245760] [MODE=varchar] [TRACE=1] python3 bench/probes/event_writer.py
# Results: bench/probes/event-properties.md, section 4.
import duckdb, time, os
N=int(os.environ.get("N","1000000")); G=int(os.environ.get("G","40000"))
ckpt=os.environ.get("CKPT","16MB"); threads=int(os.environ.get("THREADS","2"))
mode=os.environ.get("MODE","variant")
path=os.environ.get("DB", "/tmp/event_writer.duckdb")
for s in ["",".wal"]:
    try: os.remove(path+s)
    except FileNotFoundError: pass
PRE=f"""CREATE TEMP TABLE gen AS SELECT i AS seq, 1::BIGINT org_id, uuid() AS uuid,
 'event_'||(hash(i)%30)::VARCHAR AS name, 'u'||(hash(i*7)%100000)::VARCHAR AS distinct_id,
 TIMESTAMP '2026-10-01' + to_seconds((i*4.8)::BIGINT) AS ts, NULL::VARCHAR session_id,
 '{{"plan":"'||(['free','starter','pro','enterprise'])[1+(hash(i*3)%4)::INT]||'","country":"c'||(hash(i*5)%30)::VARCHAR||'","browser":"'||(['chrome','firefox','safari','edge','opera','other'])[1+(hash(i*11)%6)::INT]||'","path":"/p/'||(hash(i*17)%500)::VARCHAR||'","amount":'||((hash(i*13)%10000)/100.0)::VARCHAR||'}}' AS props,
 '127.0.0.1' ip, 'bench' user_agent, now()::TIMESTAMP received_at FROM range({N}) r(i)"""
con=duckdb.connect(path, config={"threads":threads,"memory_limit":"1GB","checkpoint_threshold":ckpt})
ptype = "VARIANT" if mode=="variant" else "VARCHAR"
conv = "props::JSON::VARIANT" if mode=="variant" else "props"
con.execute(f"""CREATE TABLE events (org_id BIGINT NOT NULL, uuid UUID NOT NULL, name VARCHAR NOT NULL,
 distinct_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, session_id VARCHAR, props {ptype}, ip VARCHAR,
 user_agent VARCHAR, received_at TIMESTAMP NOT NULL)""")
con.execute("CREATE TEMP TABLE event_rows AS SELECT * FROM events LIMIT 0")
con.execute("ALTER TABLE event_rows ALTER props TYPE VARCHAR")
con.execute("CREATE TEMP TABLE event_keys (org_id BIGINT, uuid UUID, ts TIMESTAMP)")
con.execute(PRE)
ph=[0.0]*5
t0=time.time()
for k in range(0,N,G):
    t=time.time(); con.execute("BEGIN")
    con.execute(f"CREATE OR REPLACE TEMP TABLE b AS SELECT * EXCLUDE(seq) FROM gen WHERE seq>={k} AND seq<{k+G}")
    con.execute("INSERT INTO event_keys SELECT org_id, uuid, ts FROM b")
    lo,hi=con.execute("SELECT min(ts)-INTERVAL 1 HOUR, max(ts)+INTERVAL 1 HOUR FROM b").fetchone()
    con.execute("SELECT e.org_id, e.uuid FROM events e SEMI JOIN event_keys k ON e.org_id=k.org_id AND e.uuid=k.uuid WHERE e.ts>=? AND e.ts<=?",[lo,hi]).fetchall()
    con.execute("DELETE FROM event_keys"); t1=time.time(); ph[0]+=t1-t
    con.execute("INSERT INTO event_rows SELECT * FROM b"); t2=time.time(); ph[1]+=t2-t1
    con.execute(f"INSERT INTO events SELECT org_id, uuid, name, distinct_id, ts, session_id, {conv}, ip, user_agent, received_at FROM event_rows; DELETE FROM event_rows;")
    t3=time.time(); ph[2]+=t3-t2
    con.execute("COMMIT"); t4=time.time(); ph[4]+=t4-t3
    EV=int(os.environ.get("EVERY","0"))
    if EV and (k//G+1)*G % EV < G:
        tc=time.time(); con.execute("CHECKPOINT"); ph[3]+=time.time()-tc
        if os.environ.get("TRACE"): print("ckpt at", k+G, round(time.time()-tc,2))
    if os.environ.get("TRACE") and t4-t3>0.1: print(k, round(t4-t3,2), con.execute("select sum(total_blocks) from pragma_database_size()").fetchall() if False else "")
t5=time.time(); con.execute("CHECKPOINT"); ph[3]+=time.time()-t5
d=time.time()-t0
print(f"mode={mode} G={G} ckpt={ckpt} threads={threads}: {N/d/1000:.0f} k/s ({d:.1f}s) dedup {ph[0]:.1f} stage {ph[1]:.1f} move {ph[2]:.1f} commit {ph[4]:.1f} final ckpt {ph[3]:.1f}")
