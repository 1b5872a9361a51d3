#!/usr/bin/env python3
"""Writes src/store/rollup_sql.rs: the report rollup tables, their triggers and the rebuild.

The SQL repeats, per rollup table and per trigger, the same column terms; writing them by hand
would invite a typo in one of 256 places. `src/report/tally.rs` is the Rust statement of the
same definitions, and `store::rollup::tests::triggers_agree_with_the_rust_tally` checks that
both agree on random calls, updates and deletes. Run from the repository root:
    python3 tools/gen-report-rollup.py
"""
RAW = ["direction","status","caller_normalized","callee","started_at","ended_at","wait_secs","talk_secs","agent","missed","ignored","lost_at","hangup_by","resolved_by","resolved_at","queue"]
SL = "(SELECT service_level_secs FROM report_settings WHERE id = 1)"
head = [
 ("inbound","ci"),("answered","ans"),("missed","miss"),("ignored","ig"),("unknown","un"),
 ("withheld","ci * wh"),("withheld_missed","miss * wh"),("abandoned","miss * (hangup_by IS 'caller')"),
 ("sl_hits","ans * (wait_secs <= %s)" % SL),
 ("answer_wait_sum","ans * wait_secs"),("miss_wait_sum","miss * wait_secs"),("talk_sum","ans * talk_secs"),
]
REAL = {"answer_wait_sum","miss_wait_sum","talk_sum","reaction_sum"}
WB = [10,30,60,120,300]
def rng(v, bounds, i):
    p = []
    if i > 0: p.append("%s >= %d" % (v, bounds[i-1]))
    if i < len(bounds): p.append("%s < %d" % (v, bounds[i]))
    return " AND ".join(p)
detail = []
for i in range(6): detail.append(("aw%d"%i, "ans * (%s)" % rng("wait_secs", WB, i)))
for i in range(6): detail.append(("mw%d"%i, "miss * (%s)" % rng("wait_secs", WB, i)))
LOST = ["ivr","voicemail","invalid_number","queue","group","external","user"]
for l in LOST: detail.append(("lost_"+l, "miss * (lost_at IS '%s')" % l))
detail.append(("lost_unknown", "miss * (lost_at IS NULL OR lost_at NOT IN (%s))" % ", ".join("'%s'"%l for l in LOST)))
RES = [("caller","rc"),("agent","ra"),("callback","rb")]
for x,_ in RES: detail.append(("res_"+x, "miss * (resolved_by IS '%s')" % x))
RB = [300,900,1800,3600,7200,14400,32400,86400]
for x,p in RES:
    for i in range(9): detail.append(("%s%d"%(p,i), "timed * (resolved_by IS '%s') * (%s)" % (x, rng("rx", RB, i))))
detail.append(("reaction_n","timed"))
detail.append(("reaction_sum","timed * rx"))
def layers(src):
    l1 = src
    l2 = ("SELECT d.*, (direction IS 'inbound' AND ignored = 0 AND status NOT IN ('ignored', 'unknown')) AS ci, "
          "(caller_normalized IS NULL OR caller_normalized = '') AS wh, "
          "MAX(IFNULL(resolved_at - ended_at, 0.0), 0.0) AS rx FROM (%s) AS d" % l1)
    l3 = ("SELECT e.*, (ci AND (missed = 1 OR status = 'missed')) AS miss, (ci AND NOT (missed = 1 OR status = 'missed')) AS ans, "
          "(direction IS 'inbound' AND NOT ci AND NOT (status = 'unknown' AND ignored = 0)) AS ig, "
          "(direction IS 'inbound' AND status = 'unknown' AND ignored = 0) AS un FROM (%s) AS e" % l2)
    l4 = ("SELECT f.*, (miss AND resolved_by IN ('caller', 'agent', 'callback') AND resolved_at IS NOT NULL) AS timed FROM (%s) AS f" % l3)
    return l4
SLOT = "CAST(started_at / 900 AS INTEGER)"
HOUR = "CAST(started_at / 3600 AS INTEGER)"
tables = [
 ("report_slots",[("slot","INTEGER")],[SLOT],head+detail),
 ("report_queue_hours",[("queue","TEXT"),("hour","INTEGER")],["IFNULL(queue, '')",HOUR],head),
 ("report_agent_hours",[("agent","TEXT"),("hour","INTEGER")],["IFNULL(agent, '')",HOUR],head),
 ("report_did_hours",[("did","TEXT"),("hour","INTEGER")],["IFNULL(callee, '')",HOUR],head),
]
def ddl(t):
    name, keys, _, cols = t
    lines = ["    %s %s NOT NULL" % k for k in keys] + ["    %s %s NOT NULL DEFAULT 0" % (n, "REAL" if n in REAL else "INTEGER") for n,_ in cols]
    return "CREATE TABLE %s (\n%s,\n    PRIMARY KEY (%s)\n) WITHOUT ROWID;\n" % (name, ",\n".join(lines), ", ".join(k for k,_ in keys))
def new_src(r):
    return "SELECT " + ", ".join("%s.%s AS %s" % (r, c, c) for c in RAW)
def upsert(t, r, sign):
    name, keys, kx, cols = t
    kn = [k for k,_ in keys]
    neg = "-" if sign < 0 else ""
    sel = ", ".join(kx + ["%s(%s)" % (neg, e) for _,e in cols])
    return ("    INSERT INTO %s (%s)\n    SELECT %s\n    FROM (%s) WHERE true\n    ON CONFLICT (%s) DO UPDATE SET %s;\n"
            % (name, ", ".join(kn + [n for n,_ in cols]), sel, layers(new_src(r)), ", ".join(kn),
               ", ".join("%s = %s + excluded.%s" % (n,n,n) for n,_ in cols)))
def fill(t):
    name, keys, kx, cols = t
    kn = [k for k,_ in keys]
    src = "SELECT %s FROM calls WHERE direction = 'inbound' AND id > ?1 AND id <= ?2" % ", ".join(RAW)
    return ("INSERT INTO %s (%s)\nSELECT %s\nFROM (%s)\nWHERE true GROUP BY %s\nON CONFLICT (%s) DO UPDATE SET %s;\n"
            % (name, ", ".join(kn + [n for n,_ in cols]), ", ".join(kx + ["SUM(%s)" % e for _,e in cols]), layers(src), ", ".join(kx),
               ", ".join(kn), ", ".join("%s = %s + excluded.%s" % (n,n,n) for n,_ in cols)))
WATCH = ", ".join(c for c in RAW)
FOLDED = "(SELECT folded_id FROM report_settings WHERE id = 1)"
schema = ("ALTER TABLE calls ADD COLUMN queue TEXT;\n"
 "CREATE INDEX calls_started_at ON calls (started_at);\n"
 "CREATE INDEX calls_misses_by_start ON calls (started_at, caller_normalized, resolved_by, ignored, status) WHERE direction = 'inbound' AND (missed = 1 OR status = 'missed');\n"
 "CREATE INDEX calls_misses_by_number ON calls (caller_normalized, started_at, resolved_by, ignored, status) WHERE direction = 'inbound' AND (missed = 1 OR status = 'missed');\n"
 "CREATE INDEX callback_tasks_first_missed ON callback_tasks (first_missed_at);\n"
 "CREATE TABLE report_settings (\n    id INTEGER PRIMARY KEY CHECK (id = 1),\n    service_level_secs REAL NOT NULL,\n    folded_id INTEGER NOT NULL DEFAULT 0\n);\n"
 "INSERT INTO report_settings (id, service_level_secs, folded_id) VALUES (1, 20.0, 0);\n"
 "CREATE TABLE report_mail_sent (\n    kind TEXT NOT NULL,\n    period_start REAL NOT NULL,\n    sent_at REAL NOT NULL,\n    PRIMARY KEY (kind, period_start)\n);\n")
schema += "".join(ddl(t) for t in tables)
trig = ""
trig += "CREATE TRIGGER calls_report_insert AFTER INSERT ON calls WHEN NEW.direction = 'inbound' AND NEW.id <= %s BEGIN\n" % FOLDED + "" + "".join(upsert(t,"NEW",1) for t in tables) + "END;\n"
trig += "CREATE TRIGGER calls_report_delete AFTER DELETE ON calls WHEN OLD.direction = 'inbound' AND OLD.id <= %s BEGIN\n" % FOLDED + "" + "".join(upsert(t,"OLD",-1) for t in tables) + "END;\n"
trig += "CREATE TRIGGER calls_report_update_old AFTER UPDATE OF %s ON calls WHEN OLD.direction = 'inbound' AND OLD.id <= %s BEGIN\n" % (WATCH, FOLDED) + "".join(upsert(t,"OLD",-1) for t in tables) + "END;\n"
trig += "CREATE TRIGGER calls_report_update_new AFTER UPDATE OF %s ON calls WHEN NEW.direction = 'inbound' AND NEW.id <= %s BEGIN\n" % (WATCH, FOLDED) + "".join(upsert(t,"NEW",1) for t in tables) + "END;\n"
fills = [fill(t) for t in tables]
def lit(s): return "\"" + s.replace("\\","\\\\").replace("\"","\\\"") + "\""
rs = "// @generated by tools/gen-report-rollup.py: do not edit, run it.\n"
rs += "macro_rules! rollup_tables { () => {\n" + lit(schema) + "\n}; }\n"
rs += "/// Folds the inbound calls with `?1 < id <= ?2` into the rollup, one statement a table.\nconst FOLD: [&str; %d] = [\n" % len(fills) + "".join(lit(f) + ",\n" for f in fills) + "];\n"
rs += "macro_rules! rollup_triggers { () => {\n" + lit(trig) + "\n}; }\n"
rs += "/// Slot columns after `slot`, in order: what `report::tally` reads.\npub const SLOT_COLUMNS: &str = %s;\n" % lit(", ".join(n for n,_ in head+detail))
rs += "/// Columns after the key of the per-queue, per-agent and per-DID tables, in order.\npub const HEAD_COLUMNS: &str = %s;\n" % lit(", ".join(n for n,_ in head))
open("src/store/rollup_sql.rs","w").write(rs)
