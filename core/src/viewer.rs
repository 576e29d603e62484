//! A strict reader of the common event of every topic (docs/performance.md §8): the
//! compiled viewer path reads a record here and leaves every record it does not read to
//! the Python engine.
//!
//! It accepts a *subset* of the valid events (`streamproc.engine.validate`), in which
//! every value means what the typed decoder makes of it: one JSON object, optional
//! whitespace between tokens, the topic's names (`event_id`, `room_id`, `user_id`, `ts`,
//! then `action`, `text`, `sku_id`/`quantity`/`price` or
//! `order_id`/`sku_id`/`quantity`/`amount`/`status`) and optionally `type`, each once and
//! in any order, strings without escapes or control characters (UTF-8, checked), ids of 1
//! to 128 characters, `ts` a JSON integer of at most 18 digits, a quantity an integer from
//! 1 to 10^9, a price an unsigned JSON number without exponent, an amount an unsigned JSON
//! number or a string of one with at most 15 whole digits and 2 decimals below 10^12 yuan,
//! `type` (if present) the topic's. Anything else (an escape, an unknown name, a float
//! `ts`, a negative amount, a bad byte) is `None` whatever its validity: the Python path
//! then decides, with its reasons and their precedence. So this reader can never make a
//! valid event invalid or the reverse; `tests/engine/test_viewer_path.py` checks the
//! subset property against the typed decoder and the amount and price checks on fuzzed
//! inputs.
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
    /// An add-to-cart (topic kind 2): its price is read and checked, not kept.
    Cart,
    /// A paid order (topic kind 3).
    Paid,
    /// A refunded order (topic kind 3).
    Refunded,
}

/// Topic kind of the viewer events (`KINDS` order).
pub const VIEWER: i64 = 0;
/// Topic kind of the chat messages.
pub const CHAT: i64 = 1;
/// Topic kind of the add-to-cart events.
pub const CART: i64 = 2;
/// Topic kind of the orders.
pub const ORDER: i64 = 3;

/// A viewer event read by [`read`]: the ids borrow the record's bytes (UTF-8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Viewer<'a> {
    pub event_id: &'a [u8],
    pub room_id: &'a [u8],
    pub user_id: &'a [u8],
    pub ts: i64,
    pub action: Action,
    /// A cart's or an order's SKU (empty for the other kinds).
    pub sku_id: &'a [u8],
    /// A cart's or an order's quantity (0 for the other kinds).
    pub quantity: i64,
    /// An order's amount in fen (0 for the other kinds).
    pub fen: i64,
}

/// Longest id, in characters (`validate.Id`).
const MAX_ID_CHARS: usize = 128;
/// Longest chat text, in characters (`validate.ChatEvent`).
const MAX_TEXT_CHARS: usize = 2000;
/// Most digits of a `ts` read here (any i64 of up to 18 digits fits).
const MAX_TS_DIGITS: usize = 18;
/// Largest quantity (`validate.MAX_QUANTITY`).
const MAX_QUANTITY: i64 = 1_000_000_000;
/// An order's amount is below this many fen (`validate.MAX_AMOUNT_FEN`).
const MAX_AMOUNT_FEN: i64 = 100_000_000_000_000;
/// Most digits of an amount's whole part read here (`validate._PLAIN_FEN`).
const MAX_WHOLE_DIGITS: usize = 15;

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

    /// The digits at the position (possibly none), consumed.
    fn digits(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// A cart's price: an unsigned JSON number without exponent (`0`, `19`, `59.90`), of
    /// any precision, or a string of an amount's form (`"199.00"`, [`Reader::amount`]).
    /// Every such price is a finite decimal `>= 0` (`validate.check_price`).
    fn price(&mut self) -> Option<()> {
        if self.buf.get(self.pos) == Some(&b'"') {
            return self.amount().map(|_| ());
        }
        let whole = self.digits();
        if whole.is_empty() || (whole[0] == b'0' && whole.len() > 1) {
            return None;
        }
        if self.byte(b'.').is_some() && self.digits().is_empty() {
            return None;
        }
        match self.buf.get(self.pos) {
            Some(b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    /// An order's amount in fen: an unsigned JSON number, or a string of one, with at most
    /// 15 whole digits and 2 decimals (`validate._PLAIN_FEN`; a JSON number has no leading
    /// zero, a string may), below [`MAX_AMOUNT_FEN`].
    fn amount(&mut self) -> Option<i64> {
        let quoted = self.byte(b'"').is_some();
        let whole = self.digits();
        if whole.is_empty()
            || whole.len() > MAX_WHOLE_DIGITS
            || (!quoted && whole[0] == b'0' && whole.len() > 1)
        {
            return None;
        }
        let mut fen: i64 = 0;
        for &c in whole {
            fen = fen * 10 + i64::from(c - b'0');
        }
        fen *= 100;
        if self.byte(b'.').is_some() {
            match self.digits() {
                [d] => fen += i64::from(d - b'0') * 10,
                [d, e] => fen += i64::from(d - b'0') * 10 + i64::from(e - b'0'),
                _ => return None, // none, or a third decimal
            }
        }
        if quoted {
            self.byte(b'"')?;
        } else if matches!(self.buf.get(self.pos), Some(b'e' | b'E')) {
            return None;
        }
        (fen < MAX_AMOUNT_FEN).then_some(fen)
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
        CART => b"cart",
        ORDER => b"order",
        _ => return None,
    };
    let mut r = Reader { buf: value, pos: 0 };
    let mut event_id = None;
    let mut room_id = None;
    let mut user_id = None;
    let mut ts = None;
    let mut action = None;
    let mut typed = false;
    // a cart's and an order's fields
    let mut sku_id = None;
    let mut quantity = None;
    let mut priced = false;
    let mut fen = None;
    let mut order_id = false;
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
            b"sku_id" if kind >= CART && sku_id.is_none() => sku_id = Some(r.string()?),
            b"quantity" if kind >= CART && quantity.is_none() => {
                let q = r.integer()?;
                if !(1..=MAX_QUANTITY).contains(&q) {
                    return None;
                }
                quantity = Some(q);
            }
            b"price" if kind == CART && !priced => {
                r.price()?;
                priced = true;
            }
            b"order_id" if kind == ORDER && !order_id => {
                r.string()?;
                order_id = true;
            }
            b"amount" if kind == ORDER && fen.is_none() => fen = Some(r.amount()?),
            b"status" if kind == ORDER && action.is_none() => {
                action = Some(match r.string()? {
                    b"paid" => Action::Paid,
                    b"refunded" => Action::Refunded,
                    _ => return None,
                })
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
    let (sku_id, quantity, fen) = match kind {
        CART if priced => (sku_id?, quantity?, 0),
        CART => return None,
        ORDER if order_id => (sku_id?, quantity?, fen?),
        ORDER => return None,
        _ => (&b""[..], 0, 0),
    };
    Some(Viewer {
        event_id: event_id?,
        room_id: room_id?,
        user_id: user_id?,
        ts: ts?,
        action: match kind {
            CART => Action::Cart,
            _ => action?,
        },
        sku_id,
        quantity,
        fen,
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
    fn reads_carts_and_orders_with_their_numbers() {
        let cart = br#"{"event_id":"k","room_id":"r","user_id":"u","ts":7,"sku_id":"s-1","quantity":2,"price":59.90}"#;
        let v = read_kind(cart, CART).unwrap();
        assert_eq!(
            (v.action, v.sku_id, v.quantity, v.fen),
            (Action::Cart, &b"s-1"[..], 2, 0)
        );
        let order = |amount: &str, status: &str| {
            format!(
                r#"{{"event_id":"o","room_id":"r","user_id":"u","ts":7,"order_id":"x","sku_id":"","quantity":1,"amount":{amount},"status":"{status}","type":"order"}}"#
            )
        };
        let fen = |amount: &str| read_kind(order(amount, "paid").as_bytes(), ORDER).map(|v| v.fen);
        assert_eq!(fen("199"), Some(19_900));
        assert_eq!(fen("59.9"), Some(5_990));
        assert_eq!(fen(r#""19.99""#), Some(1_999));
        assert_eq!(fen(r#""007.5""#), Some(750)); // a string may have leading zeros
        assert_eq!(fen("0"), Some(0));
        assert_eq!(fen("999999999999.99"), Some(99_999_999_999_999));
        let refund = order("1", "refunded");
        assert_eq!(
            read_kind(refund.as_bytes(), ORDER).unwrap().action,
            Action::Refunded
        );
        // left to Python: its reasons (sign, precision, range, exponent, syntax)
        for amount in [
            "-1",
            "1.234",
            "1e2",
            "1.",
            "007",
            r#""-1""#,
            r#""1"#,
            "1000000000000",
            "1234567890123456",
            r#""1.5e1""#,
            r#""1\u0030""#,
            "null",
        ] {
            assert_eq!(fen(amount), None, "{amount}");
        }
        assert!(read_kind(order("1", "void").as_bytes(), ORDER).is_none());
        assert!(read_kind(order("1", "paid").as_bytes(), CART).is_none());
        assert!(read_kind(cart, ORDER).is_none());
        let price = |p: &str| {
            let doc = format!(
                r#"{{"event_id":"k","room_id":"r","user_id":"u","ts":7,"sku_id":"s","quantity":1,"price":{p}}}"#
            );
            read_kind(doc.as_bytes(), CART).is_some()
        };
        assert!(price("0") && price("12345678901234567890.123456789"));
        assert!(price("\"199.00\"") && price("\"007\""));
        for p in [
            "-1",
            "01",
            "1e3",
            "1.",
            "\"-1\"",
            "\"1.999\"",
            "\"1e3\"",
            "null",
        ] {
            assert!(!price(p), "{p}");
        }
        let qty = |q: &str| {
            let doc = format!(
                r#"{{"event_id":"k","room_id":"r","user_id":"u","ts":7,"sku_id":"s","quantity":{q},"price":1}}"#
            );
            read_kind(doc.as_bytes(), CART).map(|v| v.quantity)
        };
        assert_eq!(qty("1000000000"), Some(1_000_000_000));
        assert_eq!(
            (qty("0"), qty("1000000001"), qty("1.0")),
            (None, None, None)
        );
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
