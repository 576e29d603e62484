//! A strict reader of the common viewer event (docs/performance.md §8): the compiled viewer
//! path reads a record here and leaves every record it does not read to the Python engine.
//!
//! It accepts a *subset* of the valid viewer events (`streamproc.engine.validate`), in
//! which every value means what the typed decoder makes of it: one JSON object, optional
//! whitespace between tokens, the names `event_id`, `room_id`, `user_id`, `ts`, `action`
//! and optionally `type`, each once and in any order, strings without escapes or control
//! characters (UTF-8, checked), ids of 1 to 128 characters, `ts` a JSON integer of at most
//! 18 digits, `action` one of the three, `type` (if present) `"viewer"`. Anything else
//! (an escape, an unknown name, a float, a bad byte) is `None` whatever its validity: the
//! Python path then decides, with its reasons and their precedence. So this reader can
//! never make a valid event invalid or the reverse; `tests/engine/test_viewer_path.py`
//! checks the subset property against the typed decoder on fuzzed inputs.
//!
//! Nothing here panics on any input.

/// What a viewer event says (or that the event is a chat message).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    Join,
    Leave,
    Heartbeat,
    /// A chat message (topic kind 1): its text is read and checked, not kept.
    Chat,
}

/// Topic kind of the viewer events (`KINDS` order).
pub const VIEWER: i64 = 0;
/// Topic kind of the chat messages.
pub const CHAT: i64 = 1;

/// A viewer event read by [`read`]: the ids borrow the record's bytes (UTF-8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Viewer<'a> {
    pub event_id: &'a [u8],
    pub room_id: &'a [u8],
    pub user_id: &'a [u8],
    pub ts: i64,
    pub action: Action,
}

/// Longest id, in characters (`validate.Id`).
const MAX_ID_CHARS: usize = 128;
/// Longest chat text, in characters (`validate.ChatEvent`).
const MAX_TEXT_CHARS: usize = 2000;
/// Most digits of a `ts` read here (any i64 of up to 18 digits fits).
const MAX_TS_DIGITS: usize = 18;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.buf.get(self.pos) {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        if self.buf.get(self.pos) == Some(&want) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters, valid UTF-8: its bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.pos;
        let rest = &self.buf[start..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let s = &rest[..len];
        if !s.is_ascii() {
            std::str::from_utf8(s).ok()?;
        }
        self.pos = start + len + 1;
        Some(s)
    }

    /// A JSON integer of 1 to [`MAX_TS_DIGITS`] digits (no sign, fraction or exponent).
    fn integer(&mut self) -> Option<i64> {
        let start = self.pos;
        let rest = &self.buf[start..];
        let len = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if len == 0 || len > MAX_TS_DIGITS || (rest[0] == b'0' && len > 1) {
            return None;
        }
        // the next byte must end the number (a fraction or exponent is refused here)
        if let Some(&c) = rest.get(len) {
            if c == b'.' || c == b'e' || c == b'E' {
                return None;
            }
        }
        let mut n: i64 = 0;
        for &c in &rest[..len] {
            n = n * 10 + i64::from(c - b'0');
        }
        self.pos = start + len;
        Some(n)
    }
}

/// Characters of a string the reader checked as UTF-8.
fn chars(s: &[u8]) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        // characters are the bytes that do not continue one
        s.iter().filter(|&&c| (c & 0xC0) != 0x80).count()
    }
}

/// An id: 1 to 128 characters.
fn id(s: &[u8]) -> Option<&[u8]> {
    (!s.is_empty() && chars(s) <= MAX_ID_CHARS).then_some(s)
}

/// The viewer event in `value`, if it is in the subset this reader accepts (module doc).
pub fn read(value: &[u8]) -> Option<Viewer<'_>> {
    read_kind(value, VIEWER)
}

/// The event of topic kind `kind` (viewer or chat) in `value`, if it is in the subset
/// this reader accepts (module doc; a chat has `text` of at most 2 000 characters, any
/// string without escapes, instead of `action`).
pub fn read_kind(value: &[u8], kind: i64) -> Option<Viewer<'_>> {
    let type_name: &[u8] = match kind {
        VIEWER => b"viewer",
        CHAT => b"chat",
        _ => return None,
    };
    let mut r = Reader { buf: value, pos: 0 };
    let mut event_id = None;
    let mut room_id = None;
    let mut user_id = None;
    let mut ts = None;
    let mut action = None;
    let mut typed = false;
    r.ws();
    r.byte(b'{')?;
    r.ws();
    if r.byte(b'}').is_some() {
        return None; // no fields: missing_field, for the Python path
    }
    loop {
        let name = r.string()?;
        r.ws();
        r.byte(b':')?;
        r.ws();
        match name {
            b"event_id" if event_id.is_none() => event_id = Some(id(r.string()?)?),
            b"room_id" if room_id.is_none() => room_id = Some(id(r.string()?)?),
            b"user_id" if user_id.is_none() => user_id = Some(id(r.string()?)?),
            b"ts" if ts.is_none() => ts = Some(r.integer()?),
            b"action" if kind == VIEWER && action.is_none() => {
                action = Some(match r.string()? {
                    b"join" => Action::Join,
                    b"leave" => Action::Leave,
                    b"heartbeat" => Action::Heartbeat,
                    _ => return None,
                })
            }
            b"text" if kind == CHAT && action.is_none() => {
                if chars(r.string()?) > MAX_TEXT_CHARS {
                    return None;
                }
                action = Some(Action::Chat);
            }
            b"type" if !typed => {
                if r.string()? != type_name {
                    return None;
                }
                typed = true;
            }
            _ => return None, // unknown or repeated name
        }
        r.ws();
        if r.byte(b',').is_some() {
            r.ws();
            continue;
        }
        r.byte(b'}')?;
        break;
    }
    r.ws();
    if r.pos != value.len() {
        return None;
    }
    Some(Viewer {
        event_id: event_id?,
        room_id: room_id?,
        user_id: user_id?,
        ts: ts?,
        action: action?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &[u8] =
        br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1700000000000,"action":"heartbeat"}"#;

    #[test]
    fn reads_the_common_event() {
        let v = read(EV).unwrap();
        assert_eq!(v.event_id, b"e1");
        assert_eq!(v.room_id, b"r1");
        assert_eq!(v.user_id, b"u1");
        assert_eq!(v.ts, 1_700_000_000_000);
        assert_eq!(v.action, Action::Heartbeat);
    }

    #[test]
    fn reads_whitespace_any_order_type_and_utf8() {
        let doc =
            " {\t\"type\" : \"viewer\",\n\"action\":\"join\", \"ts\":1 ,\"user_id\":\"观众\",\
                   \"room_id\":\"直播间\",\"event_id\":\"e\"}\r\n";
        let v = read(doc.as_bytes()).unwrap();
        assert_eq!(v.action, Action::Join);
        assert_eq!(v.ts, 1);
        assert_eq!(v.user_id, "观众".as_bytes());
    }

    #[test]
    fn leaves_everything_else_to_python() {
        let refused: &[&[u8]] = &[
            b"",
            b"{}",
            b"[]",
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1,"action":"jump"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1,"action":"join","x":1}"#,
            br#"{"event_id":"e1","event_id":"e2","room_id":"r1","user_id":"u1","ts":1,"action":"join"}"#,
            br#"{"event_id":"e\u0031","room_id":"r1","user_id":"u1","ts":1,"action":"join"}"#,
            br#"{"event_id":"","room_id":"r1","user_id":"u1","ts":1,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1.0,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1e3,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":-1,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":01,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1234567890123456789,"action":"join"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1,"action":"join","type":"chat"}"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1,"action":"join"} x"#,
            br#"{"event_id":"e1","room_id":"r1","user_id":"u1","ts":1,"action":"join",}"#,
            b"{\"event_id\":\"e\xff\",\"room_id\":\"r1\",\"user_id\":\"u1\",\"ts\":1,\"action\":\"join\"}",
            b"{\"event_id\":\"e\x01\",\"room_id\":\"r1\",\"user_id\":\"u1\",\"ts\":1,\"action\":\"join\"}",
        ];
        for doc in refused {
            assert_eq!(read(doc), None, "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn reads_a_chat_message_and_only_on_its_topic() {
        let chat =
            r#"{"event_id":"c1","room_id":"r1","user_id":"u1","ts":5,"text":"好","type":"chat"}"#
                .as_bytes();
        let v = read_kind(chat, CHAT).unwrap();
        assert_eq!((v.user_id, v.ts, v.action), (&b"u1"[..], 5, Action::Chat));
        assert_eq!(read_kind(chat, VIEWER), None);
        assert_eq!(read_kind(EV, CHAT), None);
        assert_eq!(read_kind(chat, 2), None);
        let text = |n: usize| {
            format!(
                r#"{{"event_id":"c","room_id":"r","user_id":"u","ts":1,"text":"{}"}}"#,
                "好".repeat(n)
            )
        };
        assert!(read_kind(text(2000).as_bytes(), CHAT).is_some());
        assert!(read_kind(text(2001).as_bytes(), CHAT).is_none());
        assert!(read_kind(text(0).as_bytes(), CHAT).is_some());
    }

    #[test]
    fn ids_are_counted_in_characters() {
        let at = |id: &str| {
            format!(r#"{{"event_id":"{id}","room_id":"r","user_id":"u","ts":1,"action":"join"}}"#)
        };
        assert!(read(at(&"x".repeat(128)).as_bytes()).is_some());
        assert!(read(at(&"x".repeat(129)).as_bytes()).is_none());
        assert!(read(at(&"观".repeat(128)).as_bytes()).is_some());
        assert!(read(at(&"观".repeat(129)).as_bytes()).is_none());
    }

    #[test]
    fn every_prefix_is_refused_without_panic() {
        for n in 0..EV.len() {
            assert_eq!(read(&EV[..n]), None);
        }
    }
}
