//! Lexer: condition text → tokens with byte spans.
//!
//! Knows words, string and number literals, comparison operators and
//! punctuation; everything else is an error pointing at the offending
//! characters, with a hint for operators from other languages (`==`, `&&`, `||`,
//! `!`). Keywords are told apart from names later, by the parser, because after
//! a `.` any word is a key.
//!
//! Literal syntax follows the query language reference
//! (MicrosoftDocs/azure-docs `articles/iot-hub/iot-hub-devguide-query-language.md`,
//! "Expressions and conditions"): strings in single or double quotes with the
//! escapes `\'`, `\"`, `\\` and `\uXXXX` only; decimal numbers and `0x`
//! hexadecimal integers.

use serde_json::Number;

use crate::query::err::{QueryError, SyntaxError};

/// One token and where it sits in the condition text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind<'a>,
    /// Byte offset in the condition text.
    pub(crate) offset: usize,
    /// Byte length in the condition text.
    pub(crate) len: usize,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind<'a> {
    /// A name or keyword, as written: `tags`, `AND`, `is_defined`.
    Word(&'a str),
    /// A string literal, escapes resolved.
    Str(String),
    /// A number literal, sign included.
    Number(Number),
    /// A comparison operator.
    Cmp(CmpOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

/// A comparison operator. `<>` is read as [`CmpOp::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The canonical spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// Whether `c` may start a bare name.
pub(crate) fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

/// Whether `c` may continue a bare name.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Splits `text` into tokens.
pub(crate) fn tokens(text: &str) -> Result<Vec<Token<'_>>, QueryError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut out = Vec::new();
    while let Some(token) = lexer.next_token()? {
        out.push(token);
    }
    Ok(out)
}

struct Lexer<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    /// The character just before `pos`, if any.
    fn previous(&self) -> Option<char> {
        self.text.get(..self.pos)?.chars().next_back()
    }

    fn token(&self, kind: TokenKind<'a>, start: usize) -> Token<'a> {
        Token {
            kind,
            offset: start,
            len: self.pos - start,
        }
    }

    fn next_token(&mut self) -> Result<Option<Token<'a>>, QueryError> {
        let skipped = self.rest().len() - self.rest().trim_start().len();
        self.pos += skipped;
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let kind = match (c, self.peek_second()) {
            ('(', _) => self.single(TokenKind::LParen),
            (')', _) => self.single(TokenKind::RParen),
            ('[', _) => self.single(TokenKind::LBracket),
            (']', _) => self.single(TokenKind::RBracket),
            (',', _) => self.single(TokenKind::Comma),
            ('.', Some(d)) if d.is_ascii_digit() && !self.previous().is_some_and(is_word_char) => {
                return Err(self.bad_number(start));
            }
            ('.', _) => self.single(TokenKind::Dot),
            ('!', Some('=')) | ('<', Some('>')) => self.double(TokenKind::Cmp(CmpOp::Ne)),
            ('<', Some('=')) => self.double(TokenKind::Cmp(CmpOp::Le)),
            ('>', Some('=')) => self.double(TokenKind::Cmp(CmpOp::Ge)),
            ('=', Some('=')) => {
                return Err(operator(start, "==", "IoT Hub compares with a single `=`"));
            }
            ('&', Some('&')) => return Err(operator(start, "&&", "use `AND`")),
            ('|', Some('|')) => return Err(operator(start, "||", "use `OR`")),
            ('=', _) => self.single(TokenKind::Cmp(CmpOp::Eq)),
            ('<', _) => self.single(TokenKind::Cmp(CmpOp::Lt)),
            ('>', _) => self.single(TokenKind::Cmp(CmpOp::Gt)),
            ('!', _) => {
                return Err(operator(
                    start,
                    "!",
                    "use `NOT` to negate, or `!=` for not equal",
                ));
            }
            ('&', _) => return Err(operator(start, "&", "use `AND`")),
            ('|', _) => return Err(operator(start, "|", "use `OR`")),
            ('\'' | '"', _) => TokenKind::Str(self.string(c)?),
            ('-', Some(d)) if d.is_ascii_digit() => TokenKind::Number(self.number()?),
            (d, _) if d.is_ascii_digit() => TokenKind::Number(self.number()?),
            (w, _) if is_word_start(w) => TokenKind::Word(self.word()),
            _ => return Err(self.unexpected(c)),
        };
        Ok(Some(self.token(kind, start)))
    }

    fn single(&mut self, kind: TokenKind<'a>) -> TokenKind<'a> {
        self.pos += 1;
        kind
    }

    fn double(&mut self, kind: TokenKind<'a>) -> TokenKind<'a> {
        self.pos += 2;
        kind
    }

    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }

    /// A character that starts no token.
    fn unexpected(&self, c: char) -> QueryError {
        let start = self.pos;
        let len = c.len_utf8();
        let error = match c {
            '+' | '-' | '*' | '/' | '%' => SyntaxError::new(
                format!("unsupported operator `{c}`"),
                start,
                len,
            )
            .with_help(if c == '*' {
                "`*` targets every twin only as the whole condition; arithmetic is not supported"
            } else {
                "arithmetic is not supported in conditions"
            }),
            _ => SyntaxError::new(format!("unexpected character `{c}`"), start, len),
        };
        // `tags.my-key`, `reported.ms:urn`: a key that is not a bare name.
        let next = self.rest().chars().nth(1);
        if self.previous().is_some_and(is_word_char) && next.is_some_and(is_word_char) {
            return error
                .with_help("write keys that are not plain names in brackets, like `tags['my-key']`")
                .into();
        }
        error.into()
    }

    /// A string literal opened by `quote` at `pos`.
    fn string(&mut self, quote: char) -> Result<String, QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(SyntaxError::new(
                    format!("unterminated string: no closing `{quote}`"),
                    start,
                    self.text.len() - start,
                )
                .into());
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(value),
                // A `\` at the very end: report the string as unterminated.
                '\\' if self.peek().is_none() => {}
                '\\' => value.push(self.escape()?),
                c => value.push(c),
            }
        }
    }

    /// The escape after a `\` that has just been read.
    fn escape(&mut self) -> Result<char, QueryError> {
        let start = self.pos - 1;
        let c = self.peek();
        if let Some(c @ ('\'' | '"' | '\\')) = c {
            self.pos += 1;
            return Ok(c);
        }
        if c != Some('u') {
            let len = 1 + c.map_or(0, char::len_utf8);
            let shown = self.text.get(start..start + len).unwrap_or("\\");
            return Err(SyntaxError::new(
                format!("unknown escape `{shown}` in string"),
                start,
                len,
            )
            .with_help(r#"IoT Hub strings allow `\'`, `\"`, `\\` and `\uXXXX`"#)
            .into());
        }
        self.pos += 1;
        let first = self.hex4(start)?;
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first).ok_or_else(|| self.bad_unicode(start));
        }
        // A high surrogate: UTF-16 needs its low half as a second `\uXXXX`.
        if !self.rest().starts_with("\\u") {
            return Err(self.bad_unicode(start));
        }
        self.pos += 2;
        let second = self.hex4(start)?;
        if !(0xDC00..0xE000).contains(&second) {
            return Err(self.bad_unicode(start));
        }
        let code = 0x1_0000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        char::from_u32(code).ok_or_else(|| self.bad_unicode(start))
    }

    /// Four hex digits of a `\u` escape that began at `start`.
    fn hex4(&mut self, start: usize) -> Result<u32, QueryError> {
        let digits = self
            .rest()
            .get(..4)
            .filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        let code = digits.and_then(|d| u32::from_str_radix(d, 16).ok());
        match code {
            Some(code) => {
                self.pos += 4;
                Ok(code)
            }
            None => Err(self.bad_unicode(start)),
        }
    }

    /// A malformed `\u` escape that began at `start`: the span is the `\u` and
    /// up to four characters that should have been hex digits.
    fn bad_unicode(&self, start: usize) -> QueryError {
        let after = self.text.get(start + 2..).unwrap_or_default();
        // ASCII alphanumerics are one byte each.
        let len = 2 + after
            .chars()
            .take(4)
            .take_while(char::is_ascii_alphanumeric)
            .count();
        let shown = self.text.get(start..start + len).unwrap_or("\\u");
        SyntaxError::new(
            format!("invalid unicode escape `{shown}` in string"),
            start,
            len,
        )
        .with_help(r"write `\u` and four hex digits, and a UTF-16 surrogate pair as two escapes")
        .into()
    }

    /// A number literal at `pos`, with an optional leading `-`.
    fn number(&mut self) -> Result<Number, QueryError> {
        let start = self.pos;
        let rest = self.rest();
        let negative = rest.starts_with('-');
        let unsigned = rest.get(usize::from(negative)..).unwrap_or_default();
        if unsigned.starts_with("0x") || unsigned.starts_with("0X") {
            return self.hex_number(start, negative);
        }
        let mut len = usize::from(negative) + digits(unsigned);
        let mut float = false;
        if let Some(after) = rest.get(len..).and_then(|r| r.strip_prefix('.')) {
            let fraction = digits(after);
            if fraction == 0 {
                return Err(self.bad_number(start));
            }
            float = true;
            len += 1 + fraction;
        }
        if let Some(after) = rest.get(len..).and_then(|r| r.strip_prefix(['e', 'E'])) {
            let sign = usize::from(after.starts_with(['+', '-']));
            let exponent = digits(after.get(sign..).unwrap_or_default());
            if exponent == 0 {
                return Err(self.bad_number(start));
            }
            float = true;
            len += 1 + sign + exponent;
        }
        if rest
            .get(len..)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| is_word_char(c) || c == '.')
        {
            return Err(self.bad_number(start));
        }
        let literal = rest.get(..len).unwrap_or_default();
        self.pos += len;
        let number = if float {
            literal.parse::<f64>().ok().and_then(Number::from_f64)
        } else if let Ok(n) = literal.parse::<i64>() {
            Some(Number::from(n))
        } else if let Ok(n) = literal.parse::<u64>() {
            Some(Number::from(n))
        } else {
            // Beyond 64 bits: keep it as a float, as JSON readers do.
            literal.parse::<f64>().ok().and_then(Number::from_f64)
        };
        number.ok_or_else(|| out_of_range(literal, start))
    }

    /// A `0x` literal at `start`, after an optional `-`.
    fn hex_number(&mut self, start: usize, negative: bool) -> Result<Number, QueryError> {
        let prefix = usize::from(negative) + 2;
        let rest = self.rest();
        let body = rest.get(prefix..).unwrap_or_default();
        let len = body
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(body.len());
        if len == 0
            || body
                .get(len..)
                .and_then(|r| r.chars().next())
                .is_some_and(|c| is_word_char(c) || c == '.')
        {
            return Err(self.bad_number(start));
        }
        let literal = rest.get(..prefix + len).unwrap_or_default();
        self.pos += prefix + len;
        let value = body
            .get(..len)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        let number = match (value, negative) {
            (Some(v), false) => Some(Number::from(v)),
            (Some(v), true) => i64::try_from(v)
                .ok()
                .and_then(i64::checked_neg)
                .map(Number::from),
            (None, _) => None,
        };
        number.ok_or_else(|| out_of_range(literal, start))
    }

    /// A malformed number starting at `start`: the span runs over the number-like
    /// characters that follow.
    fn bad_number(&self, start: usize) -> QueryError {
        let rest = self.text.get(start..).unwrap_or_default();
        let body = rest.get(1..).unwrap_or_default();
        let len = 1 + body
            .find(|c: char| !(is_word_char(c) || c == '.' || c == '+' || c == '-'))
            .unwrap_or(body.len());
        let shown = rest.get(..len).unwrap_or_default();
        SyntaxError::new(format!("invalid number `{shown}`"), start, len)
            .with_help("write numbers like `42`, `-1.5`, `2e3` or `0x1F`")
            .into()
    }
}

/// How many ASCII digits `text` starts with.
fn digits(text: &str) -> usize {
    text.find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len())
}

fn operator(offset: usize, op: &str, help: &str) -> QueryError {
    SyntaxError::new(format!("unknown operator `{op}`"), offset, op.len())
        .with_help(help)
        .into()
}

fn out_of_range(literal: &str, offset: usize) -> QueryError {
    SyntaxError::new(
        format!("number `{literal}` is out of range"),
        offset,
        literal.len(),
    )
    .with_help("IoT Hub twin numbers are 64-bit")
    .into()
}

#[cfg(test)]
mod tests {
    use serde_json::Number;

    use crate::query::lexer::{CmpOp, TokenKind, tokens};

    fn kinds(text: &str) -> Vec<TokenKind<'_>> {
        tokens(text).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            kinds("= != <> < <= > >= ( ) [ ] , ."),
            vec![
                TokenKind::Cmp(CmpOp::Eq),
                TokenKind::Cmp(CmpOp::Ne),
                TokenKind::Cmp(CmpOp::Ne),
                TokenKind::Cmp(CmpOp::Lt),
                TokenKind::Cmp(CmpOp::Le),
                TokenKind::Cmp(CmpOp::Gt),
                TokenKind::Cmp(CmpOp::Ge),
                TokenKind::LParen,
                TokenKind::RParen,
                TokenKind::LBracket,
                TokenKind::RBracket,
                TokenKind::Comma,
                TokenKind::Dot,
            ]
        );
    }

    #[test]
    fn spans_are_byte_offsets() {
        let tokens = tokens("tags.é = 'ü'").unwrap_err();
        // `é` is not a bare-name character: the error points at its two bytes.
        assert_eq!((tokens.offset(), tokens.len()), (5, 2));
        let tokens = super::tokens("'ü' = x").unwrap();
        let spans: Vec<_> = tokens.iter().map(|t| (t.offset, t.len)).collect();
        assert_eq!(spans, vec![(0, 4), (5, 1), (7, 1)]);
    }

    #[test]
    fn strings_in_either_quote_with_escapes() {
        assert_eq!(
            kinds(r#"'it\'s' "say \"hi\"" 'a\\b' '\u00e9\u0041' '\uD83D\uDE00' 'é "x"'"#),
            vec![
                TokenKind::Str("it's".into()),
                TokenKind::Str("say \"hi\"".into()),
                TokenKind::Str("a\\b".into()),
                TokenKind::Str("éA".into()),
                TokenKind::Str("😀".into()),
                TokenKind::Str("é \"x\"".into()),
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("42 -7 1.5 -0.25 2e3 1E-2 0x1F -0x10 18446744073709551615"),
            vec![
                TokenKind::Number(42.into()),
                TokenKind::Number((-7).into()),
                TokenKind::Number(Number::from_f64(1.5).unwrap()),
                TokenKind::Number(Number::from_f64(-0.25).unwrap()),
                TokenKind::Number(Number::from_f64(2000.0).unwrap()),
                TokenKind::Number(Number::from_f64(0.01).unwrap()),
                TokenKind::Number(31.into()),
                TokenKind::Number((-16).into()),
                TokenKind::Number(u64::MAX.into()),
            ]
        );
    }

    #[test]
    fn bad_numbers_and_escapes() {
        for (text, offset, len, message) in [
            ("5abc", 0, 4, "invalid number `5abc`"),
            ("1.", 0, 2, "invalid number `1.`"),
            ("1.2.3", 0, 5, "invalid number `1.2.3`"),
            ("2e", 0, 2, "invalid number `2e`"),
            ("0x", 0, 2, "invalid number `0x`"),
            ("x = .5", 4, 2, "invalid number `.5`"),
            ("1e999", 0, 5, "number `1e999` is out of range"),
            (
                "0x1FFFFFFFFFFFFFFFF",
                0,
                19,
                "number `0x1FFFFFFFFFFFFFFFF` is out of range",
            ),
            (r"'a\nb'", 2, 2, r"unknown escape `\n` in string"),
            (
                r"'\u12G4'",
                1,
                6,
                r"invalid unicode escape `\u12G4` in string",
            ),
            (
                r"'\uD83D'",
                1,
                6,
                r"invalid unicode escape `\uD83D` in string",
            ),
        ] {
            let error = tokens(text).unwrap_err();
            assert_eq!(
                (error.offset(), error.len(), error.to_string().as_str()),
                (offset, len, message),
                "{text}"
            );
        }
    }
}
