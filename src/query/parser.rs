//! Parser: tokens → syntax tree, by recursive descent.
//!
//! ```text
//! condition := or
//! or        := and ("OR" and)*
//! and       := unary ("AND" unary)*
//! unary     := "NOT" unary | primary
//! primary   := "(" or ")" | "IS_DEFINED" "(" path ")"
//!            | operand [cmp operand | ("IN" | "NIN") list]
//! operand   := path | string | number | "true" | "false" | "null"
//! path      := field ("." key | "[" string "]")*
//! list      := "[" literal ("," literal)* "]"
//! ```
//!
//! Precedence is NOT > AND > OR, as in Cosmos DB SQL ("Logical operators").
//! Keywords and function names are case-insensitive; twin keys are not (twin
//! keys are case-sensitive: `iot-hub-devguide-device-twins.md`, "Tags and
//! properties format"). The twin's own fields (`deviceId`, `tags`,
//! `properties.reported`, ...) are matched in any case and stored in their
//! canonical spelling, because the hub resolves them so: `query-twins.md`
//! projects `SELECT DeviceId, LastActivityTime` as `deviceId`,
//! `lastActivityTime`. A first key that is no twin field is an error, as it is
//! almost always a typo (`tag.site`) or an unquoted string (`= prod`).
//!
//! Keys that are not plain names go in brackets, `tags['my-key']`, like Cosmos
//! DB SQL's property accessor; whether the hub accepts brackets is UNCONFIRMED.
//! After a `.`, a key spelt like a reserved word is an error pointing to the
//! bracket form, because the hub rejects `tags.group` (MicrosoftDocs/azure-docs
//! issue 17106).
//!
//! Recursion is bounded by [`MAX_DEPTH`] levels of parentheses and `NOT`, so
//! no input can overflow the stack.

use crate::query::MAX_DEPTH;
use crate::query::ast::{Expr, Literal, Membership, Operand, Path, is_reserved};
use crate::query::err::{QueryError, SyntaxError, TooDeepError, UnknownFunctionError};
use crate::query::lexer::{Token, TokenKind, is_word_char};

/// Top-level twin fields, canonical spelling: [SW] `Twin` in
/// reference/iothub-rest-api.md §5.2, plus `modelId`, `configurations` and
/// `attributes` seen in real payloads.
const TWIN_FIELDS: &[&str] = &[
    // The common ones first: did-you-mean prefers earlier names on a tie.
    "deviceId",
    "moduleId",
    "tags",
    "properties",
    "status",
    "capabilities",
    "etag",
    "deviceEtag",
    "version",
    "statusReason",
    "statusUpdateTime",
    "connectionState",
    "lastActivityTime",
    "cloudToDeviceMessageCount",
    "authenticationType",
    "x509Thumbprint",
    "deviceScope",
    "parentScopes",
    "modelId",
    "configurations",
    "attributes",
];

/// The sections under `properties`.
const PROPERTY_SECTIONS: &[&str] = &["desired", "reported"];

/// The one function the hub allows in twin query conditions
/// (`iot-hub-devguide-query-language.md`, "Functions").
const IS_DEFINED: &str = "IS_DEFINED";

/// Functions the hub has only in message routing queries (same page), so a
/// user may reasonably try them in a target.
const ROUTING_FUNCTIONS: &[&str] = &[
    "ABS",
    "AS_NUMBER",
    "CEILING",
    "CONCAT",
    "CONTAINS",
    "ENDS_WITH",
    "EXP",
    "FLOOR",
    "INDEX_OF",
    "IS_ARRAY",
    "IS_BOOL",
    "IS_NULL",
    "IS_NUMBER",
    "IS_OBJECT",
    "IS_PRIMITIVE",
    "IS_STRING",
    "LENGTH",
    "LOWER",
    "POWER",
    "SIGN",
    "SQRT",
    "SQUARE",
    "STARTS_WITH",
    "SUBSTRING",
    "UPPER",
];

/// Rejects a whole query (`SELECT * FROM devices WHERE ...`) before lexing, where
/// its `*` would hide the real problem.
pub(crate) fn reject_full_query(text: &str) -> Result<(), QueryError> {
    let start = text.len() - text.trim_start().len();
    let rest = text.get(start..).unwrap_or_default();
    let len = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
    let word = rest.get(..len).unwrap_or_default();
    if !word.eq_ignore_ascii_case("SELECT") {
        return Ok(());
    }
    Err(
        SyntaxError::new(format!("expected a condition, found `{word}`"), start, len)
            .with_help(WHOLE_QUERY_HELP)
            .into(),
    )
}

const WHOLE_QUERY_HELP: &str = "write only the condition, without `SELECT * FROM devices WHERE`";

/// Parses the tokens of `text` into one expression.
pub(crate) fn expression(text: &str, tokens: Vec<Token<'_>>) -> Result<Expr, QueryError> {
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.peek_kind() {
        None => Ok(expr),
        Some(TokenKind::RParen) => Err(parser
            .error_here("unexpected `)` with no matching `(`")
            .into()),
        Some(_) => Err(parser.expected("`AND`, `OR` or end of condition").into()),
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    /// Index of the next unread token.
    pos: usize,
    /// Parentheses and `NOT`s open around the current token.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<&TokenKind<'a>> {
        self.peek().map(|t| &t.kind)
    }

    fn peek_second_kind(&self) -> Option<&TokenKind<'a>> {
        self.tokens.get(self.pos + 1).map(|t| &t.kind)
    }

    fn advance(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += usize::from(token.is_some());
        token
    }

    /// Whether the next token is one of `keywords`, in any case.
    fn at_keyword(&self, keywords: &[&str]) -> bool {
        matches!(self.peek_kind(), Some(TokenKind::Word(w)) if is_one_of(w, keywords))
    }

    /// The source text of `token`.
    fn text_of(&self, token: &Token<'_>) -> &'a str {
        self.text
            .get(token.offset..token.offset + token.len)
            .unwrap_or_default()
    }

    /// Byte offset and length of the tokens from index `start` to the last one read.
    fn span_since(&self, start: usize) -> (usize, usize) {
        let first = self.tokens.get(start);
        let last = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i));
        match (first, last) {
            (Some(first), Some(last)) if start < self.pos => {
                (first.offset, last.offset + last.len - first.offset)
            }
            _ => (self.text.len(), 0),
        }
    }

    /// The source text of the tokens from index `start` to the last one read.
    fn text_since(&self, start: usize) -> &'a str {
        let (offset, len) = self.span_since(start);
        self.text.get(offset..offset + len).unwrap_or_default()
    }

    /// `token` as the user wrote it, for "found ..." in messages.
    fn describe(&self, token: Option<&Token<'_>>) -> String {
        match token {
            Some(token) => quote(self.text_of(token)),
            None => "end of condition".to_owned(),
        }
    }

    /// " after `X`", naming the token before the current one, or "" at the start.
    fn after_previous(&self) -> String {
        match self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(token) => format!(" after {}", self.describe(Some(token))),
            None => String::new(),
        }
    }

    fn error_at(token: &Token<'_>, message: impl Into<String>) -> SyntaxError {
        SyntaxError::new(message, token.offset, token.len)
    }

    /// An error at the current token, or at the end of the text.
    fn error_here(&self, message: impl Into<String>) -> SyntaxError {
        match self.peek() {
            Some(token) => Self::error_at(token, message),
            None => SyntaxError::new(message, self.text.len(), 0),
        }
    }

    /// "expected X after `Y`, found Z" at the current token.
    fn expected(&self, what: &str) -> SyntaxError {
        let found = self.describe(self.peek());
        self.error_here(format!(
            "expected {what}{}, found {found}",
            self.after_previous()
        ))
    }

    /// Opens one nesting level at `token`.
    fn enter(&mut self, token: &Token<'_>) -> Result<(), QueryError> {
        if self.depth >= MAX_DEPTH {
            return Err(TooDeepError::new(MAX_DEPTH, token.offset, token.len).into());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        while self.at_keyword(&["OR"]) {
            self.advance();
            items.push(self.and()?);
        }
        Ok(junction(items, Junction::Or))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.unary()?];
        while self.at_keyword(&["AND"]) {
            self.advance();
            items.push(self.unary()?);
        }
        Ok(junction(items, Junction::And))
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if !self.at_keyword(&["NOT"]) {
            return self.primary();
        }
        let Some(not) = self.advance() else {
            return Err(self.expected("a condition").into());
        };
        self.enter(&not)?;
        let inner = self.unary()?;
        self.leave();
        Ok(Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        match (self.peek_kind(), self.peek_second_kind()) {
            (Some(TokenKind::LParen), _) => self.group(),
            (Some(TokenKind::Word(w)), _) if is_one_of(w, &["AND", "OR"]) => {
                Err(self.expected("a condition").into())
            }
            (Some(TokenKind::Word(w)), Some(TokenKind::LParen)) if !is_one_of(w, KEYWORDS) => {
                self.function()
            }
            (
                None
                | Some(
                    TokenKind::RParen
                    | TokenKind::RBracket
                    | TokenKind::Comma
                    | TokenKind::Dot
                    | TokenKind::Cmp(_),
                ),
                _,
            ) => Err(self.expected("a condition").into()),
            _ => self.comparison(),
        }
    }

    /// `( condition )`.
    fn group(&mut self) -> Result<Expr, QueryError> {
        let Some(open) = self.advance() else {
            return Err(self.expected("`(`").into());
        };
        self.enter(&open)?;
        let inner = self.or()?;
        self.close(&open, "`AND`, `OR` or `)`")?;
        self.leave();
        Ok(inner)
    }

    /// Consumes the `)` that closes `open`.
    fn close(&mut self, open: &Token<'_>, expected: &str) -> Result<(), QueryError> {
        match self.peek_kind() {
            Some(TokenKind::RParen) => {
                self.advance();
                Ok(())
            }
            None => Err(Self::error_at(open, "`(` is never closed").into()),
            Some(_) => {
                let found = self.describe(self.peek());
                Err(self
                    .error_here(format!("expected {expected}, found {found}"))
                    .into())
            }
        }
    }

    /// `NAME ( ... )`: only `IS_DEFINED(path)` exists.
    fn function(&mut self) -> Result<Expr, QueryError> {
        let (Some(name), Some(open)) = (self.advance(), self.advance()) else {
            return Err(self.expected("a function").into());
        };
        let word = self.text_of(&name);
        if !word.eq_ignore_ascii_case(IS_DEFINED) {
            return Err(UnknownFunctionError::new(word, name.offset, function_help(word)).into());
        }
        let is_path =
            matches!(self.peek_kind(), Some(TokenKind::Word(w)) if !is_one_of(w, KEYWORDS));
        if !is_path {
            let found = self.describe(self.peek());
            return Err(self
                .error_here(format!("expected a twin path in `{word}`, found {found}"))
                .with_help("write the property to test, like `IS_DEFINED(tags.site)`")
                .into());
        }
        let path = self.path()?;
        self.close(&open, "`)` after the path")?;
        Ok(Expr::IsDefined(path))
    }

    /// An operand, then a comparison, `IN`/`NIN`, or nothing.
    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let start = self.pos;
        let left = self.operand()?;
        let op = match self.peek_kind() {
            Some(TokenKind::Cmp(op)) => *op,
            Some(TokenKind::Word(w)) if is_one_of(w, &["IN"]) => {
                return self.member(left, Membership::In);
            }
            Some(TokenKind::Word(w)) if is_one_of(w, &["NIN"]) => {
                return self.member(left, Membership::Nin);
            }
            // A value alone is a condition; only a connective or the end may follow.
            None | Some(TokenKind::RParen) => return Ok(Expr::Value(left)),
            Some(TokenKind::Word(w)) if is_one_of(w, &["AND", "OR"]) => {
                return Ok(Expr::Value(left));
            }
            Some(_) => {
                let found = self.describe(self.peek());
                let operand = quote(self.text_since(start));
                let error = self.error_here(format!(
                    "expected an operator after {operand}, found {found}"
                ));
                let not_in = self.at_keyword(&["NOT"])
                    && matches!(self.peek_second_kind(), Some(TokenKind::Word(w)) if is_one_of(w, &["IN"]));
                return Err(if not_in {
                    error.with_help("IoT Hub writes `NOT IN` as `NIN`")
                } else {
                    error
                }
                .into());
            }
        };
        self.advance();
        let right = self.operand()?;
        Ok(Expr::Compare { left, op, right })
    }

    /// The list after `IN` or `NIN`.
    fn member(&mut self, left: Operand, op: Membership) -> Result<Expr, QueryError> {
        self.advance();
        if self.peek_kind() == Some(&TokenKind::LParen) {
            return Err(self
                .expected("a list")
                .with_help("IoT Hub lists use brackets: `IN ['a', 'b']`")
                .into());
        }
        let Some(open) = self
            .peek()
            .filter(|t| t.kind == TokenKind::LBracket)
            .cloned()
        else {
            return Err(self.expected("a list").into());
        };
        self.advance();
        if self.peek_kind() == Some(&TokenKind::RBracket) {
            return Err(self
                .expected("a value")
                .with_help("a list needs at least one value")
                .into());
        }
        let mut list = Vec::new();
        loop {
            list.push(self.literal()?);
            match self.peek_kind() {
                Some(TokenKind::Comma) => {
                    self.advance();
                }
                Some(TokenKind::RBracket) => {
                    self.advance();
                    return Ok(Expr::Member { left, op, list });
                }
                None => return Err(Self::error_at(&open, "`[` is never closed").into()),
                Some(_) => return Err(self.expected("`,` or `]`").into()),
            }
        }
    }

    /// A constant inside a list.
    fn literal(&mut self) -> Result<Literal, QueryError> {
        let start = self.pos;
        match self.operand()? {
            Operand::Literal(literal) => Ok(literal),
            Operand::Path(_) => {
                let (offset, len) = self.span_since(start);
                let text = self.text_since(start);
                Err(SyntaxError::new(
                    format!("lists hold only constants, found {}", quote(text)),
                    offset,
                    len,
                )
                .with_help(format!("quote text values: `'{text}'`"))
                .into())
            }
        }
    }

    /// A path or a constant.
    fn operand(&mut self) -> Result<Operand, QueryError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.expected("a value").into());
        };
        let literal = match &token.kind {
            TokenKind::Str(s) => Literal::String(s.clone()),
            TokenKind::Number(n) => Literal::Number(n.clone()),
            TokenKind::Word(w) if is_one_of(w, &["TRUE"]) => Literal::Bool(true),
            TokenKind::Word(w) if is_one_of(w, &["FALSE"]) => Literal::Bool(false),
            TokenKind::Word(w) if is_one_of(w, &["NULL"]) => Literal::Null,
            TokenKind::Word(w) if is_one_of(w, &["UNDEFINED"]) => {
                return Err(Self::error_at(&token, "`undefined` cannot be compared")
                    .with_help("test for a missing property with `NOT IS_DEFINED(path)`")
                    .into());
            }
            TokenKind::Word(w) if is_one_of(w, KEYWORDS) => {
                return Err(self.expected("a value").into());
            }
            TokenKind::Word(w) if self.peek_second_kind() == Some(&TokenKind::LParen) => {
                return Err(
                    Self::error_at(&token, format!("function `{w}` cannot be compared"))
                        .with_help("`IS_DEFINED(path)` is a condition on its own")
                        .into(),
                );
            }
            TokenKind::Word(_) => return Ok(Operand::Path(self.path()?)),
            TokenKind::LBracket => {
                return Err(self
                    .expected("a value")
                    .with_help("lists are allowed only after `IN` and `NIN`")
                    .into());
            }
            _ => return Err(self.expected("a value").into()),
        };
        self.advance();
        Ok(Operand::Literal(literal))
    }

    /// `field ("." key | "[" string "]")*`, the current token being a word.
    fn path(&mut self) -> Result<Path, QueryError> {
        let Some(first) = self.advance() else {
            return Err(self.expected("a twin path").into());
        };
        let mut keys = vec![self.field(&first)?];
        loop {
            // The key's own token follows the `.` or `[`.
            let key_index = self.pos + 1;
            let key = match self.peek_kind() {
                Some(TokenKind::Dot) => {
                    self.advance();
                    self.dotted_key(&keys)?
                }
                Some(TokenKind::LBracket) => {
                    self.advance();
                    self.bracket_key()?
                }
                _ => break,
            };
            let key_token = self.tokens.get(key_index);
            let key = match keys.as_slice() {
                [field] if field == "properties" => section(&key, key_token)?,
                _ => key,
            };
            keys.push(key);
        }
        Ok(Path::new(keys))
    }

    /// The first key of a path: a twin field, in its canonical spelling.
    fn field(&self, token: &Token<'_>) -> Result<String, QueryError> {
        let word = self.text_of(token);
        if let Some(field) = TWIN_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(word)) {
            return Ok((*field).to_owned());
        }
        if is_one_of(word, &["SELECT", "FROM", "WHERE"]) {
            return Err(
                Self::error_at(token, format!("expected a condition, found `{word}`"))
                    .with_help(WHOLE_QUERY_HELP)
                    .into(),
            );
        }
        let help = if let Some(near) = did_you_mean(word, TWIN_FIELDS) {
            format!("did you mean `{near}`?")
        } else if matches!(self.peek_kind(), Some(TokenKind::Dot | TokenKind::LBracket)) {
            "twin fields include `deviceId`, `moduleId`, `tags`, `properties`, `status` and `capabilities`"
                .to_owned()
        } else {
            format!("quote text values: `'{word}'`")
        };
        Err(
            Self::error_at(token, format!("unknown twin field `{word}`"))
                .with_help(help)
                .into(),
        )
    }

    /// The key after a `.`; `keys` are those before it.
    fn dotted_key(&mut self, keys: &[String]) -> Result<String, QueryError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.expected("a key").into());
        };
        let path = Path::new(keys.to_vec());
        let word = match token.kind {
            TokenKind::Word(word) => word,
            TokenKind::Str(_) | TokenKind::Number(_) => {
                let key = match token.kind {
                    TokenKind::Str(_) => self.text_of(&token).to_owned(),
                    _ => format!("'{}'", self.text_of(&token)),
                };
                return Err(self
                    .expected("a key")
                    .with_help(format!(
                        "write keys that are not plain names in brackets, like `{path}[{key}]`"
                    ))
                    .into());
            }
            _ => return Err(self.expected("a key").into()),
        };
        if is_reserved(word) {
            return Err(Self::error_at(
                &token,
                format!("`{word}` is a reserved word in IoT Hub queries"),
            )
            .with_help(format!("write it in brackets: `{path}['{word}']`"))
            .into());
        }
        self.advance();
        Ok(word.to_owned())
    }

    /// The `'key']` after a `[`.
    fn bracket_key(&mut self) -> Result<String, QueryError> {
        let Some(Token {
            kind: TokenKind::Str(key),
            offset,
            len,
        }) = self.peek().cloned()
        else {
            return Err(self.expected("a quoted key").into());
        };
        if key.contains('.') {
            return Err(SyntaxError::new(
                format!(
                    "twin keys cannot contain `.`, found {}",
                    quote(self.text.get(offset..offset + len).unwrap_or_default())
                ),
                offset,
                len,
            )
            .with_help("write each key on its own, like `tags['a']['b']`")
            .into());
        }
        self.advance();
        if self.peek_kind() != Some(&TokenKind::RBracket) {
            return Err(self.expected("`]`").into());
        }
        self.advance();
        Ok(key)
    }
}

/// Words with a meaning of their own; none starts a path or names a function.
const KEYWORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "TRUE",
    "FALSE",
    "NULL",
    "UNDEFINED",
];

/// Whether `word` is one of `words`, in any case.
fn is_one_of(word: &str, words: &[&str]) -> bool {
    words.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// `text` in backticks for a message, cut short when long.
fn quote(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("`{cut}…`")
    } else {
        format!("`{text}`")
    }
}

/// The key under `properties`, `desired` or `reported` in any case, read from `token`.
fn section(key: &str, token: Option<&Token<'_>>) -> Result<String, QueryError> {
    if let Some(section) = PROPERTY_SECTIONS
        .iter()
        .find(|s| s.eq_ignore_ascii_case(key))
    {
        return Ok((*section).to_owned());
    }
    let (offset, len) = token.map_or((0, 0), |t| (t.offset, t.len));
    let help = match did_you_mean(key, PROPERTY_SECTIONS) {
        Some(near) => format!("did you mean `properties.{near}`?"),
        None => "twin properties are `properties.desired` and `properties.reported`".to_owned(),
    };
    Err(
        SyntaxError::new(format!("unknown property section `{key}`"), offset, len)
            .with_help(help)
            .into(),
    )
}

/// `AND` or `OR`.
#[derive(Debug, Clone, Copy)]
enum Junction {
    And,
    Or,
}

/// `items` joined by `kind`, flattening nested junctions of the same kind; a
/// single item stands alone.
fn junction(items: Vec<Expr>, kind: Junction) -> Expr {
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match (kind, item) {
            (Junction::And, Expr::And(inner)) | (Junction::Or, Expr::Or(inner)) => {
                flat.extend(inner);
            }
            (_, item) => flat.push(item),
        }
    }
    if flat.len() == 1
        && let Some(only) = flat.pop()
    {
        return only;
    }
    match kind {
        Junction::And => Expr::And(flat),
        Junction::Or => Expr::Or(flat),
    }
}

/// Help for a call to `name`, which is not `IS_DEFINED`.
fn function_help(name: &str) -> String {
    if let Some(routing) = ROUTING_FUNCTIONS
        .iter()
        .find(|f| f.eq_ignore_ascii_case(name))
    {
        return format!(
            "`{routing}` exists only in message routing queries; twin queries support `IS_DEFINED` alone"
        );
    }
    match did_you_mean(name, &[IS_DEFINED]) {
        Some(near) => format!("did you mean `{near}`?"),
        None => "twin queries support `IS_DEFINED` alone".to_owned(),
    }
}

/// The candidate closest to `word` by edit distance, ignoring case, if close
/// enough to be a plausible typo.
fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    let limit = word.chars().count().div_ceil(3);
    candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&word, &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use crate::query::{QueryError, parse};

    /// Parses `text`, which must fail, into what a user reads: the underlined
    /// text, the message and the help.
    fn parse_error(text: &str) -> (QueryError, &str) {
        let error = parse(text).unwrap_err();
        let underlined = text
            .get(error.offset()..error.offset() + error.len())
            .unwrap();
        (error, underlined)
    }

    /// Malformed conditions and what the user sees: offset, length, message, help.
    const MALFORMED: &[(&str, usize, usize, &str, Option<&str>)] = &[
        (
            "tags.env = 'prod",
            11,
            5,
            "unterminated string: no closing `'`",
            None,
        ),
        (
            "tags.env = \"prod\\",
            11,
            6,
            "unterminated string: no closing `\"`",
            None,
        ),
        (
            "tags.env =",
            10,
            0,
            "expected a value after `=`, found end of condition",
            None,
        ),
        (
            "tags.env = AND tags.a = 1",
            11,
            3,
            "expected a value after `=`, found `AND`",
            None,
        ),
        (
            "IS_DEFIND(tags.x)",
            0,
            9,
            "unknown function `IS_DEFIND`",
            Some("did you mean `IS_DEFINED`?"),
        ),
        (
            "starts_with(deviceId, 'a')",
            0,
            11,
            "unknown function `starts_with`",
            Some(
                "`STARTS_WITH` exists only in message routing queries; twin queries support `IS_DEFINED` alone",
            ),
        ),
        (
            "tags.a = 1)",
            10,
            1,
            "unexpected `)` with no matching `(`",
            None,
        ),
        (
            "()",
            1,
            1,
            "expected a condition after `(`, found `)`",
            None,
        ),
        ("(tags.a = 1", 0, 1, "`(` is never closed", None),
        (
            "(tags.a = 1 tags.b = 2)",
            12,
            4,
            "expected `AND`, `OR` or `)`, found `tags`",
            None,
        ),
        (
            "tags.a == 1",
            7,
            2,
            "unknown operator `==`",
            Some("IoT Hub compares with a single `=`"),
        ),
        (
            "tags.a = 1 && tags.b = 2",
            11,
            2,
            "unknown operator `&&`",
            Some("use `AND`"),
        ),
        (
            "tags.a = 1 || tags.b = 2",
            11,
            2,
            "unknown operator `||`",
            Some("use `OR`"),
        ),
        (
            "!tags.a",
            0,
            1,
            "unknown operator `!`",
            Some("use `NOT` to negate, or `!=` for not equal"),
        ),
        (
            "tags.a = 1 AND",
            14,
            0,
            "expected a condition after `AND`, found end of condition",
            None,
        ),
        (
            "tags.a = 1 or ",
            14,
            0,
            "expected a condition after `or`, found end of condition",
            None,
        ),
        (
            "AND tags.a = 1",
            0,
            3,
            "expected a condition, found `AND`",
            None,
        ),
        (
            "tags.x = 'a' 'b'",
            13,
            3,
            "expected `AND`, `OR` or end of condition after `'a'`, found `'b'`",
            None,
        ),
        (
            "tags.env 'prod'",
            9,
            6,
            "expected an operator after `tags.env`, found `'prod'`",
            None,
        ),
        (
            "tag.env = 'x'",
            0,
            3,
            "unknown twin field `tag`",
            Some("did you mean `tags`?"),
        ),
        (
            "property.reported.x = 1",
            0,
            8,
            "unknown twin field `property`",
            Some("did you mean `properties`?"),
        ),
        (
            "tags.env = prod",
            11,
            4,
            "unknown twin field `prod`",
            Some("quote text values: `'prod'`"),
        ),
        (
            "properties.reportd.x = 1",
            11,
            7,
            "unknown property section `reportd`",
            Some("did you mean `properties.reported`?"),
        ),
        (
            "tags.group = 'a'",
            5,
            5,
            "`group` is a reserved word in IoT Hub queries",
            Some("write it in brackets: `tags['group']`"),
        ),
        (
            "tags.my-key = 1",
            7,
            1,
            "unsupported operator `-`",
            Some("write keys that are not plain names in brackets, like `tags['my-key']`"),
        ),
        (
            "tags['a.b'] = 1",
            5,
            5,
            "twin keys cannot contain `.`, found `'a.b'`",
            Some("write each key on its own, like `tags['a']['b']`"),
        ),
        (
            "tags[0] = 1",
            5,
            1,
            "expected a quoted key after `[`, found `0`",
            None,
        ),
        (
            "tags['a' = 1",
            9,
            1,
            "expected `]` after `'a'`, found `=`",
            None,
        ),
        (
            "tags.site IN ('a')",
            13,
            1,
            "expected a list after `IN`, found `(`",
            Some("IoT Hub lists use brackets: `IN ['a', 'b']`"),
        ),
        (
            "tags.site IN []",
            14,
            1,
            "expected a value after `[`, found `]`",
            Some("a list needs at least one value"),
        ),
        (
            "tags.site IN ['a',]",
            18,
            1,
            "expected a value after `,`, found `]`",
            None,
        ),
        ("tags.site IN ['a'", 13, 1, "`[` is never closed", None),
        (
            "tags.site IN ['a' 'b']",
            18,
            3,
            "expected `,` or `]` after `'a'`, found `'b'`",
            None,
        ),
        (
            "tags.site IN [tags.x]",
            14,
            6,
            "lists hold only constants, found `tags.x`",
            Some("quote text values: `'tags.x'`"),
        ),
        (
            "tags.site NOT IN ['a']",
            10,
            3,
            "expected an operator after `tags.site`, found `NOT`",
            Some("IoT Hub writes `NOT IN` as `NIN`"),
        ),
        (
            "tags.x = undefined",
            9,
            9,
            "`undefined` cannot be compared",
            Some("test for a missing property with `NOT IS_DEFINED(path)`"),
        ),
        (
            "IS_DEFINED('tags.x')",
            11,
            8,
            "expected a twin path in `IS_DEFINED`, found `'tags.x'`",
            Some("write the property to test, like `IS_DEFINED(tags.site)`"),
        ),
        ("IS_DEFINED(tags.x", 10, 1, "`(` is never closed", None),
        (
            "IS_DEFINED(tags.x) = true",
            19,
            1,
            "expected `AND`, `OR` or end of condition after `)`, found `=`",
            None,
        ),
        (
            "tags.x = is_defined(tags.y)",
            9,
            10,
            "function `is_defined` cannot be compared",
            Some("`IS_DEFINED(path)` is a condition on its own"),
        ),
        (
            "tags.x = 1 + 2",
            11,
            1,
            "unsupported operator `+`",
            Some("arithmetic is not supported in conditions"),
        ),
        (
            "  SELECT * FROM devices WHERE tags.x = 1",
            2,
            6,
            "expected a condition, found `SELECT`",
            Some("write only the condition, without `SELECT * FROM devices WHERE`"),
        ),
        (
            "WHERE tags.x = 1",
            0,
            5,
            "expected a condition, found `WHERE`",
            Some("write only the condition, without `SELECT * FROM devices WHERE`"),
        ),
        (
            "   ",
            3,
            0,
            "empty condition",
            Some("write `*` to target every twin"),
        ),
        (
            "tags.x = 1.",
            9,
            2,
            "invalid number `1.`",
            Some("write numbers like `42`, `-1.5`, `2e3` or `0x1F`"),
        ),
        ("tags.é = 1", 5, 2, "unexpected character `é`", None),
    ];

    #[test]
    fn malformed_conditions_point_at_the_offending_token() {
        let mut wrong = Vec::new();
        for &(text, offset, len, message, help) in MALFORMED {
            let (error, _) = parse_error(text);
            let got = (error.offset(), error.len(), error.to_string(), error.help());
            let want = (offset, len, message.to_owned(), help.map(str::to_owned));
            if got != want {
                wrong.push(format!("{text}\n   got {got:?}\n  want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn errors_carry_stable_codes() {
        use miette::Diagnostic;

        for (text, code) in [
            ("tags.a == 1", "twinops::query::syntax"),
            ("IS_DEFIND(tags.x)", "twinops::query::unknown_function"),
            (&"NOT ".repeat(65), "twinops::query::too_deep"),
            (&"a".repeat(9000), "twinops::query::too_long"),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.code().unwrap().to_string(), code, "{text}");
        }
    }

    #[test]
    fn offsets_are_bytes_not_characters() {
        let (error, underlined) = parse_error("tags.é = 'ü' AND tags.x = 'ü' == 1");
        assert_eq!(underlined, "é");
        assert_eq!(error.offset(), 5);

        let (error, underlined) = parse_error("tags['é'] = 'ü' AND tags.x == 1");
        assert_eq!(underlined, "==");
        assert_eq!(error.offset(), 29);
    }

    #[test]
    fn keywords_and_functions_are_case_insensitive_twin_fields_are_canonical() {
        let lower =
            parse("not is_defined(tags.a) and tags.b in ['x'] or tags.c nin [true, null]").unwrap();
        let upper =
            parse("NOT IS_DEFINED(tags.a) AND tags.b IN ['x'] OR tags.c NIN [TRUE, NULL]").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(
            parse("DEVICEID = 'd'").unwrap(),
            parse("deviceId = 'd'").unwrap()
        );
        assert_eq!(
            parse("Properties.Desired.x = 1").unwrap().paths(),
            vec!["properties.desired.x"]
        );
        // Keys below the twin's own fields are the user's, and case-sensitive.
        assert_ne!(
            parse("tags.Env = 1").unwrap(),
            parse("tags.env = 1").unwrap()
        );
    }
}
