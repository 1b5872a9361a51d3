#!/usr/bin/env python3
"""Writes src/store/rollup_sql.rs: the report rollup tables, their triggers and the rebuild,
for SQLite and for PostgreSQL.

The SQL repeats, per rollup table and per trigger, the same column terms; writing them by hand
would invite a typo in one of 256 places. `src/report/tally.rs` is the Rust statement of the
same definitions, and `store::rollup::tests::triggers_agree_with_the_rust_tally` checks that
both agree on random calls, updates and deletes, on both engines. The SQLite text is a shipped
migration (version 9): the generator must keep producing it byte for byte. Run from the
repository root:
    python3 tools/gen-report-rollup.py
"""
RAW = ["direction","status","caller_normalized","callee","started_at","ended_at","wait_secs","talk_secs","agent","missed","ignored","lost_at","hangup_by","resolved_by","resolved_at","queue"]
SL = "(SELECT service_level_secs FROM report_settings WHERE id = 1)"
PG = False

def B(cond):
    """A condition as 0 or 1 (SQLite's comparisons are integers already)."""
    return "(CASE WHEN %s THEN 1 ELSE 0 END)" % cond if PG else "(%s)" % cond
def IS(col, lit):
    """Null-safe equality."""
    return "%s IS NOT DISTINCT FROM %s" % (col, lit) if PG else "%s IS %s" % (col, lit)
def T(flag):
    """A 0/1 flag as a condition."""
    return "%s = 1" % flag if PG else flag
def NULLOR(e, d):
    return "COALESCE(%s, %s)" % (e, d) if PG else "IFNULL(%s, %s)" % (e, d)
def MAX2(a, b):
    return "GREATEST(%s, %s)" % (a, b) if PG else "MAX(%s, %s)" % (a, b)
def BUCKET(secs):
    return "CAST(FLOOR(started_at / %d) AS BIGINT)" % secs if PG else "CAST(started_at / %d AS INTEGER)" % secs

def rng(v, bounds, i):
    p = []
    if i > 0: p.append("%s >= %d" % (v, bounds[i-1]))
    if i < len(bounds): p.append("%s < %d" % (v, bounds[i]))
    return " AND ".join(p)
WB = [10,30,60,120,300]
LOST = ["ivr","voicemail","invalid_number","queue","group","external","user"]
RES = [("caller","rc"),("agent","ra"),("callback","rb")]
RB = [300,900,1800,3600,7200,14400,32400,86400]
REAL = {"answer_wait_sum","miss_wait_sum","talk_sum","reaction_sum"}

def terms():
    head = [
     ("inbound","ci"),("answered","ans"),("missed","miss"),("ignored","ig"),("unknown","un"),
     ("withheld","ci * wh"),("withheld_missed","miss * wh"),("abandoned","miss * " + B(IS("hangup_by", "'caller'"))),
     ("sl_hits","ans * " + B("wait_secs <= %s" % SL)),
     ("answer_wait_sum","ans * wait_secs"),("miss_wait_sum","miss * wait_secs"),("talk_sum","ans * talk_secs"),
    ]
    detail = []
    for i in range(6): detail.append(("aw%d"%i, "ans * " + B(rng("wait_secs", WB, i))))
    for i in range(6): detail.append(("mw%d"%i, "miss * " + B(rng("wait_secs", WB, i))))
    for l in LOST: detail.append(("lost_"+l, "miss * " + B(IS("lost_at", "'%s'" % l))))
    detail.append(("lost_unknown", "miss * " + B("lost_at IS NULL OR lost_at NOT IN (%s)" % ", ".join("'%s'"%l for l in LOST))))
    for x,_ in RES: detail.append(("res_"+x, "miss * " + B(IS("resolved_by", "'%s'" % x))))
    for x,p in RES:
        for i in range(9): detail.append(("%s%d"%(p,i), "timed * " + B(IS("resolved_by", "'%s'" % x)) + " * " + B(rng("rx", RB, i))))
    detail.append(("reaction_n","timed"))
    detail.append(("reaction_sum","timed * rx"))
    return head, detail

def layers(src):
    l1 = src
    l2 = ("SELECT d.*, %s AS ci, " % B(IS("direction", "'inbound'") + " AND ignored = 0 AND status NOT IN ('ignored', 'unknown')") +
          "%s AS wh, " % B("caller_normalized IS NULL OR caller_normalized = ''") +
          "%s AS rx FROM (%s) AS d" % (MAX2(NULLOR("resolved_at - ended_at", "0.0"), "0.0"), l1))
    l3 = ("SELECT e.*, %s AS miss, %s AS ans, " % (B(T("ci") + " AND (missed = 1 OR status = 'missed')"), B(T("ci") + " AND NOT (missed = 1 OR status = 'missed')")) +
          "%s AS ig, " % B(IS("direction", "'inbound'") + " AND NOT " + T("ci") + " AND NOT (status = 'unknown' AND ignored = 0)") +
          "%s AS un FROM (%s) AS e" % (B(IS("direction", "'inbound'") + " AND status = 'unknown' AND ignored = 0"), l2))
    l4 = ("SELECT f.*, %s AS timed FROM (%s) AS f" % (B(T("miss") + " AND resolved_by IN ('caller', 'agent', 'callback') AND resolved_at IS NOT NULL"), l3))
    return l4

def tables():
    head, detail = terms()
    return [
     ("report_slots",[("slot","INTEGER")],[BUCKET(900)],head+detail),
     ("report_queue_hours",[("queue","TEXT"),("hour","INTEGER")],[NULLOR("queue", "''"),BUCKET(3600)],head),
     ("report_agent_hours",[("agent","TEXT"),("hour","INTEGER")],[NULLOR("agent", "''"),BUCKET(3600)],head),
     ("report_did_hours",[("did","TEXT"),("hour","INTEGER")],[NULLOR("callee", "''"),BUCKET(3600)],head),
    ]
def sqltype(t):
    if not PG: return t
    return {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "TEXT": "TEXT"}[t]
def ddl(t):
    name, keys, _, cols = t
    lines = ["    %s %s NOT NULL" % (k, sqltype(ty)) for k, ty in keys] + ["    %s %s NOT NULL DEFAULT 0" % (n, sqltype("REAL" if n in REAL else "INTEGER")) for n,_ in cols]
    return "CREATE TABLE %s (\n%s,\n    PRIMARY KEY (%s)\n)%s;\n" % (name, ",\n".join(lines), ", ".join(k for k,_ in keys), "" if PG else " WITHOUT ROWID")
def new_src(r):
    return "SELECT " + ", ".join("%s.%s AS %s" % (r, c, c) for c in RAW)
def sets(name, cols):
    # PostgreSQL needs the existing row's column qualified.
    return ", ".join("%s = %s%s + excluded.%s" % (n, name + "." if PG else "", n, n) for n,_ in cols)
def alias():
    return " AS g" if PG else ""
def upsert(t, r, sign, indent="    "):
    name, keys, kx, cols = t
    kn = [k for k,_ in keys]
    neg = "-" if sign < 0 else ""
    sel = ", ".join(kx + ["%s(%s)" % (neg, e) for _,e in cols])
    return ("%sINSERT INTO %s (%s)\n%sSELECT %s\n%sFROM (%s)%s WHERE true\n%sON CONFLICT (%s) DO UPDATE SET %s;\n"
            % (indent, name, ", ".join(kn + [n for n,_ in cols]), indent, sel, indent, layers(new_src(r)), alias(), indent, ", ".join(kn),
               sets(name, cols)))
def fill(t):
    name, keys, kx, cols = t
    kn = [k for k,_ in keys]
    src = "SELECT %s FROM calls WHERE direction = 'inbound' AND id > ?1 AND id <= ?2" % ", ".join(RAW)
    return ("INSERT INTO %s (%s)\nSELECT %s\nFROM (%s)%s\nWHERE true GROUP BY %s\nON CONFLICT (%s) DO UPDATE SET %s;\n"
            % (name, ", ".join(kn + [n for n,_ in cols]), ", ".join(kx + ["SUM(%s)" % e for _,e in cols]), layers(src), alias(), ", ".join(kx),
               ", ".join(kn), sets(name, cols)))
WATCH = ", ".join(c for c in RAW)
FOLDED = "(SELECT folded_id FROM report_settings WHERE id = 1)"
def schema():
    s = ("ALTER TABLE calls ADD COLUMN queue TEXT;\n"
     "CREATE INDEX calls_started_at ON calls (started_at);\n"
     "CREATE INDEX calls_misses_by_start ON calls (started_at, caller_normalized, resolved_by, ignored, status) WHERE direction = 'inbound' AND (missed = 1 OR status = 'missed');\n"
     "CREATE INDEX calls_misses_by_number ON calls (caller_normalized, started_at, resolved_by, ignored, status) WHERE direction = 'inbound' AND (missed = 1 OR status = 'missed');\n"
     "CREATE INDEX callback_tasks_first_missed ON callback_tasks (first_missed_at);\n"
     "CREATE TABLE report_settings (\n    id %s PRIMARY KEY CHECK (id = 1),\n    service_level_secs %s NOT NULL,\n    folded_id %s NOT NULL DEFAULT 0\n);\n" % (sqltype("INTEGER"), sqltype("REAL"), sqltype("INTEGER")) +
     "INSERT INTO report_settings (id, service_level_secs, folded_id) VALUES (1, 20.0, 0);\n"
     "CREATE TABLE report_mail_sent (\n    kind TEXT NOT NULL,\n    period_start %s NOT NULL,\n    sent_at %s NOT NULL,\n    PRIMARY KEY (kind, period_start)\n);\n" % (sqltype("REAL"), sqltype("REAL")))
    return s + "".join(ddl(t) for t in tables())
def triggers():
    ts = tables()
    if not PG:
        trig = ""
        trig += "CREATE TRIGGER calls_report_insert AFTER INSERT ON calls WHEN NEW.direction = 'inbound' AND NEW.id <= %s BEGIN\n" % FOLDED + "" + "".join(upsert(t,"NEW",1) for t in ts) + "END;\n"
        trig += "CREATE TRIGGER calls_report_delete AFTER DELETE ON calls WHEN OLD.direction = 'inbound' AND OLD.id <= %s BEGIN\n" % FOLDED + "" + "".join(upsert(t,"OLD",-1) for t in ts) + "END;\n"
        trig += "CREATE TRIGGER calls_report_update_old AFTER UPDATE OF %s ON calls WHEN OLD.direction = 'inbound' AND OLD.id <= %s BEGIN\n" % (WATCH, FOLDED) + "".join(upsert(t,"OLD",-1) for t in ts) + "END;\n"
        trig += "CREATE TRIGGER calls_report_update_new AFTER UPDATE OF %s ON calls WHEN NEW.direction = 'inbound' AND NEW.id <= %s BEGIN\n" % (WATCH, FOLDED) + "".join(upsert(t,"NEW",1) for t in ts) + "END;\n"
        return trig
    # PostgreSQL: one row trigger function; OLD is NULL on INSERT and NEW on DELETE.
    i = "        "
    trig = ("CREATE FUNCTION calls_report_fold() RETURNS trigger LANGUAGE plpgsql AS $fold$\n"
            "DECLARE\n    folded BIGINT;\nBEGIN\n"
            "    SELECT folded_id INTO folded FROM report_settings WHERE id = 1;\n"
            "    IF TG_OP IN ('UPDATE', 'DELETE') THEN\n      IF OLD.direction = 'inbound' AND OLD.id <= folded THEN\n"
            + "".join(upsert(t, "OLD", -1, i) for t in ts) +
            "      END IF;\n    END IF;\n"
            "    IF TG_OP IN ('UPDATE', 'INSERT') THEN\n      IF NEW.direction = 'inbound' AND NEW.id <= folded THEN\n"
            + "".join(upsert(t, "NEW", 1, i) for t in ts) +
            "      END IF;\n    END IF;\n    RETURN NULL;\nEND\n$fold$;\n"
            "CREATE TRIGGER calls_report_insert_delete AFTER INSERT OR DELETE ON calls FOR EACH ROW EXECUTE FUNCTION calls_report_fold();\n"
            "CREATE TRIGGER calls_report_update AFTER UPDATE OF %s ON calls FOR EACH ROW EXECUTE FUNCTION calls_report_fold();\n" % WATCH)
    return trig

def lit(s): return "\"" + s.replace("\\","\\\\").replace("\"","\\\"") + "\""
def emit(suffix):
    fills = [fill(t) for t in tables()]
    rs = "macro_rules! rollup_tables%s { () => {\n" % suffix + lit(schema()) + "\n}; }\n"
    rs += "/// Folds the inbound calls with `?1 < id <= ?2` into the rollup, one statement a table%s.\nconst FOLD%s: [&str; %d] = [\n" % (" (PostgreSQL)" if PG else "", suffix.upper(), len(fills)) + "".join(lit(f) + ",\n" for f in fills) + "];\n"
    rs += "macro_rules! rollup_triggers%s { () => {\n" % suffix + lit(triggers()) + "\n}; }\n"
    return rs
rs = "// @generated by tools/gen-report-rollup.py: do not edit, run it.\n"
rs += emit("")
head, detail = terms()
rs += "/// Slot columns after `slot`, in order: what `report::tally` reads.\npub const SLOT_COLUMNS: &str = %s;\n" % lit(", ".join(n for n,_ in head+detail))
rs += "/// Columns after the key of the per-queue, per-agent and per-DID tables, in order.\npub const HEAD_COLUMNS: &str = %s;\n" % lit(", ".join(n for n,_ in head))
PG = True
rs += emit("_pg")
open("src/store/rollup_sql.rs","w").write(rs)
