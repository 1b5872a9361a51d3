//! perezvon's two languages, for everything people read (the console, the HTML report): the
//! [`Lang`] itself and the names of perezvon's own vocabulary ([`word`]). The console's page
//! texts live in `console::i18n`; this module depends on nothing, so `report` can use it too.

/// A language of the console and the HTML report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ru,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }
}

/// The Russian (and English) names of perezvon's own vocabulary: lost_at, states, outcomes,
/// resolvers, directions.
pub fn word(lang: Lang, w: &str) -> String {
    let ru = match w {
        "ivr" => "IVR",
        "voicemail" => "голосовая почта",
        "invalid_number" => "неверный номер",
        "queue" => "очередь",
        "group" => "группа",
        "external" => "переадресация",
        "user" => "абонент",
        "pending" => "ожидает",
        "in_progress" => "звоним",
        "done" => "выполнено",
        "given_up" => "прекращено",
        "cancelled" => "отменено",
        "connected" => "дозвонились",
        "no_answer" => "не ответил",
        "busy" => "занято",
        "agent_missed" => "агент не взял",
        "failed" => "ошибка",
        "unknown" => "неизвестно",
        "caller" => "перезвонил сам",
        "agent" => "агент",
        "callback" => "перезвон",
        "inbound" => "входящий",
        "outbound" => "исходящий",
        "internal" => "внутренний",
        "answered" => "отвечен",
        "missed" => "пропущен",
        "ignored" => "случайный",
        "expired" => "устарело",
        "requested" => "по просьбе",
        "resolved" => "решено",
        "call_later" => "перезвонить позже",
        "wrong_number" => "не тот номер",
        "do_not_call" => "не звонить",
        "nobody" => "никто",
        _ => return w.replace('_', " "),
    };
    match lang {
        Lang::Ru => ru.to_string(),
        Lang::En => match w {
            "external" => "forwarded".into(),
            "invalid_number" => "invalid number".into(),
            "in_progress" => "dialling".into(),
            "given_up" => "given up".into(),
            "no_answer" => "no answer".into(),
            "agent_missed" => "agent missed".into(),
            "caller" => "caller called again".into(),
            _ => w.replace('_', " "),
        },
    }
}
