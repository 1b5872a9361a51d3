//! The console's two languages. Every fixed text of the pages is a key here with its English
//! and Russian form; [`Lang::pick`] chooses from the `perezvon_lang` cookie (the switch in the
//! page), then `Accept-Language`, then English.

pub use crate::lang::{word, Lang};

/// The cookie the language switch sets.
pub const LANG_COOKIE: &str = "perezvon_lang";

impl Lang {
    /// The language of a request: the cookie, then the best of `Accept-Language` (q-values
    /// honoured), then English.
    pub fn pick(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for item in accept_language.unwrap_or("").split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let Some(l) = Lang::parse(primary) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, l));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The text of `key` in this language (the key itself when unknown, which a test forbids).
    pub fn t(self, key: &str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, ru)) => match self {
                Lang::En => en,
                Lang::Ru => ru,
            },
            None => "?",
        }
    }
}

/// (key, English, Russian).
pub const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "perezvon console", "Консоль perezvon"),
    ("nav.now", "Now", "Сейчас"),
    ("nav.callbacks", "To call back", "Перезвонить"),
    ("nav.missed", "Missed calls", "Пропущенные"),
    ("nav.report", "Report", "Отчёт"),
    ("logout", "Log out", "Выйти"),
    ("role.viewer", "viewer", "наблюдатель"),
    ("role.supervisor", "supervisor", "супервизор"),
    ("login.title", "Sign in", "Вход"),
    ("login.user", "User", "Пользователь"),
    ("login.password", "Password", "Пароль"),
    ("login.submit", "Sign in", "Войти"),
    (
        "login.failed",
        "Wrong user name or password.",
        "Неверное имя пользователя или пароль.",
    ),
    (
        "login.limited",
        "Too many failed attempts. Try again later.",
        "Слишком много неудачных попыток. Попробуйте позже.",
    ),
    ("login.expired", "Please sign in.", "Войдите, пожалуйста."),
    ("now.servers", "PBX servers", "Серверы АТС"),
    ("now.link_up", "connected", "на связи"),
    ("now.link_down", "no link", "нет связи"),
    ("now.link_never", "connecting", "подключение"),
    ("now.since", "since", "с"),
    ("now.events", "events", "событий"),
    ("now.in_progress", "Calls in progress", "Звонки сейчас"),
    ("now.in_flight", "Callbacks in flight", "Перезвоны сейчас"),
    (
        "now.none_in_flight",
        "No callback is being dialled.",
        "Сейчас никому не перезваниваем.",
    ),
    ("now.today", "Today", "Сегодня"),
    ("now.queues", "Queues now", "Очереди сейчас"),
    (
        "now.no_queues",
        "No queue reported by a connected server.",
        "Подключённые серверы не сообщили об очередях.",
    ),
    ("q.queue", "Queue", "Очередь"),
    ("q.waiting", "Waiting", "Ждут"),
    ("q.longest", "Longest wait", "Дольше всех"),
    ("q.talking", "Agents talking", "Агенты говорят"),
    ("q.free", "Free", "Свободны"),
    ("q.paused", "Paused", "На паузе"),
    ("q.logged_in", "Logged in", "В системе"),
    ("now.inbound", "inbound", "входящих"),
    ("now.answered", "answered", "отвечено"),
    ("now.missed", "missed", "пропущено"),
    ("now.unresolved", "still unresolved", "ещё не решено"),
    ("now.callbacks", "callback attempts", "попыток перезвона"),
    (
        "now.connected",
        "callbacks connected",
        "перезвонов дозвонились",
    ),
    ("now.pending", "tasks to call back", "задач на перезвон"),
    (
        "now.recent",
        "Latest missed calls today",
        "Последние пропущенные сегодня",
    ),
    (
        "now.none_missed",
        "No missed call today.",
        "Сегодня пропущенных нет.",
    ),
    ("now.live", "live", "онлайн"),
    ("now.stale", "reconnecting…", "переподключение…"),
    ("now.updated", "updated", "обновлено"),
    (
        "now.held",
        "DATABASE FAILING: verdicts held in memory",
        "БАЗА ДАННЫХ НЕДОСТУПНА: вердикты в памяти",
    ),
    ("col.id", "#", "№"),
    ("col.number", "Number", "Номер"),
    ("col.misses", "Misses", "Пропусков"),
    ("col.since", "Since", "С"),
    ("col.lost_at", "Where lost", "Где потерян"),
    ("col.next", "Next attempt", "Следующая попытка"),
    ("col.attempts", "Attempts", "Попыток"),
    ("col.state", "State", "Состояние"),
    ("col.last", "Last outcome", "Последний итог"),
    ("col.actions", "Actions", "Действия"),
    ("col.time", "Time", "Время"),
    ("col.did", "Dialled number", "Набранный номер"),
    ("col.wait", "Waited", "Ждал"),
    ("col.agent", "Agent", "Агент"),
    ("col.resolved", "Resolved", "Решено"),
    ("col.callback", "Callback", "Перезвон"),
    ("col.direction", "Direction", "Направление"),
    ("col.status", "Verdict", "Итог"),
    ("col.talk", "Talk", "Разговор"),
    ("col.target", "Target", "Куда"),
    ("col.started", "Started", "Начато"),
    ("col.closed", "Closed", "Закрыто"),
    ("col.reason", "Reason", "Причина"),
    ("act.call_now", "Call now", "Позвонить сейчас"),
    ("act.cancel", "Cancel", "Отменить"),
    ("act.retry", "Retry", "Повторить"),
    ("cb.open", "Open tasks", "Открытые задачи"),
    (
        "cb.none",
        "Nobody is waiting for a callback.",
        "Никто не ждёт перезвона.",
    ),
    (
        "cb.closed",
        "Closed in the last 7 days",
        "Закрыты за 7 дней",
    ),
    ("cb.dialling", "dialling now", "звоним"),
    (
        "cb.never",
        "never (closed hours)",
        "никогда (нет рабочих часов)",
    ),
    (
        "cb.viewer",
        "You can look; a supervisor can act.",
        "Вы можете смотреть; действовать может супервизор.",
    ),
    (
        "msg.cancelled",
        "Task cancelled: it will not be dialled again.",
        "Задача отменена: больше звонить не будем.",
    ),
    (
        "msg.cancelled_in_flight",
        "Task cancelled; the call in progress is not hung up.",
        "Задача отменена; текущий звонок не прерван.",
    ),
    (
        "msg.call_now",
        "The task is due now: the dialer calls as soon as the rules allow.",
        "Задача к исполнению: звоним, как только позволят правила.",
    ),
    (
        "msg.call_now_closed_hours",
        "The task is due, but it is outside working hours: the call goes out at",
        "Задача к исполнению, но сейчас нерабочее время: позвоним",
    ),
    (
        "msg.retry",
        "The task is pending again with a fresh round of attempts.",
        "Задача снова в очереди с новым набором попыток.",
    ),
    (
        "msg.guard",
        "The toll-fraud guard refuses this number: it is never dialled.",
        "Защита от фрода запрещает этот номер: звонить не будем.",
    ),
    (
        "msg.not_open",
        "The task is not open any more.",
        "Задача уже закрыта.",
    ),
    (
        "msg.in_flight",
        "An attempt is in flight; wait for its outcome.",
        "Идёт попытка; дождитесь её итога.",
    ),
    ("msg.no_task", "No such task.", "Такой задачи нет."),
    (
        "msg.other_open",
        "This number already has another open task.",
        "У этого номера уже есть другая открытая задача.",
    ),
    (
        "msg.forbidden",
        "Only a supervisor can do this.",
        "Это может только супервизор.",
    ),
    (
        "msg.csrf",
        "The form was stale or forged; reload the page and try again.",
        "Форма устарела или подделана; обновите страницу и повторите.",
    ),
    ("f.from", "From", "С"),
    ("f.to", "To", "По"),
    ("f.lost_at", "Where lost", "Где потерян"),
    ("f.did", "Dialled number", "Набранный номер"),
    ("f.queue", "Queue", "Очередь"),
    ("f.agent", "Agent", "Агент"),
    ("f.state", "Resolution", "Решение"),
    ("f.any", "any", "любое"),
    ("f.unresolved", "unresolved", "не решено"),
    ("f.resolved", "resolved", "решено"),
    ("f.apply", "Show", "Показать"),
    (
        "missed.none",
        "No missed call matches.",
        "Пропущенных по этим условиям нет.",
    ),
    (
        "missed.more",
        "More calls match; narrow the filters to see them.",
        "Подходит больше звонков; уточните условия.",
    ),
    ("missed.withheld", "withheld", "скрыт"),
    ("missed.shown", "calls shown", "звонков показано"),
    ("hist.title", "Customer", "Клиент"),
    ("hist.calls", "Calls", "Звонки"),
    ("hist.attempts", "Callback attempts", "Попытки перезвона"),
    (
        "hist.none",
        "No call of this number is stored.",
        "Звонков этого номера нет.",
    ),
    ("report.period", "Period", "Период"),
    ("bad.request", "Bad request", "Неверный запрос"),
    (
        "bad.date",
        "is not a date (YYYY-MM-DD)",
        "не дата (ГГГГ-ММ-ДД)",
    ),
    (
        "bad.order",
        "the period ends before it starts",
        "период кончается раньше, чем начинается",
    ),
    (
        "bad.long",
        "the period is longer than 10 years",
        "период длиннее 10 лет",
    ),
    ("bad.number", "is not a phone number", "не номер телефона"),
    (
        "err.db",
        "The database cannot be read now",
        "База данных сейчас недоступна",
    ),
    ("yes", "yes", "да"),
    ("no", "no", "нет"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_and_cookie() {
        assert_eq!(Lang::pick(None, None), Lang::En);
        assert_eq!(Lang::pick(None, Some("ru-RU,ru;q=0.9,en;q=0.8")), Lang::Ru);
        assert_eq!(Lang::pick(None, Some("en-US,en;q=0.9,ru;q=0.8")), Lang::En);
        assert_eq!(Lang::pick(None, Some("de, ru;q=0.5")), Lang::Ru);
        assert_eq!(Lang::pick(None, Some("ru;q=0, en;q=0.1")), Lang::En);
        assert_eq!(Lang::pick(Some("ru"), Some("en")), Lang::Ru);
        assert_eq!(Lang::pick(Some("xx"), Some("ru")), Lang::Ru);
        assert_eq!(Lang::pick(None, Some(";;;,,q=,ru;q=abc")), Lang::Ru);
    }

    #[test]
    fn every_key_the_console_uses_exists() {
        let re = regex::Regex::new(
            r#""((?:now|col|act|cb|msg|f|missed|hist|report|bad|err|nav|login|role|q)\.[a-z_]+)""#,
        )
        .unwrap();
        let mut n = 0;
        for src in [include_str!("pages.rs"), include_str!("mod.rs")] {
            for c in re.captures_iter(src) {
                let k = &c[1];
                assert!(TEXTS.iter().any(|(t, _, _)| *t == k), "no text for {k:?}");
                n += 1;
            }
        }
        assert!(n > 50, "the scan found the keys ({n})");
    }

    #[test]
    fn every_key_is_unique_and_translated() {
        for (i, (k, en, ru)) in TEXTS.iter().enumerate() {
            assert!(!en.is_empty() && !ru.is_empty(), "{k}");
            assert!(
                TEXTS[i + 1..].iter().all(|(o, _, _)| o != k),
                "duplicate {k}"
            );
        }
    }
}
