//! Statement: a whole `IoT Hub` query, as `POST /devices/query` receives it.
//!
//! [`statement`] parses
//!
//! ```text
//! statement  := "SELECT" ["TOP" number] selection "FROM" collection ["WHERE" condition]
//! selection  := "*" | "COUNT" "(" ")" ["AS" name] | field ("," field)*
//! field      := path ["AS" name]
//! collection := "devices" | "devices" "." "modules"
//! ```
//!
//! into a [`Statement`], which [`Statement::rows`] evaluates over the twins of
//! its collection. Keywords are case-insensitive. The condition is read by the
//! same lexer and parser as [`parse`](crate::query::parse), so a condition
//! means the same in a policy target and in a query; paths in the selection go
//! through that parser too, which gives the twin's own fields their canonical
//! spelling. In a `devices.modules` query a path may start with
//! `devices.modules.` (`devices.modules.moduleId`); the prefix is dropped,
//! because the module twin is the document the path reads. Every error span is
//! a byte range of the whole statement.
//!
//! The rest of the hub's language (reference/iothub-rest-api.md §6) is
//! refused with an [`UnsupportedError`] naming it: `GROUP BY`, `ORDER BY`,
//! `AVG`, `SUM`, `MIN`, `MAX`, joins and `devices.jobs`. Pure, and total: no
//! panics on any input.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::query::ast::{Expr, Operand, is_reserved};
use crate::query::err::{QueryError, SyntaxError, UnknownFunctionError, UnsupportedError};
use crate::query::lexer::{self, Token, TokenKind};
use crate::query::{Condition, Scope, check_length, parser};

/// The key of an unnamed `COUNT()`: Cosmos DB SQL, which the hub's language
/// follows, names the first unnamed value of a selection `$1` (INFERRED for
/// the hub).
const COUNT_ALIAS: &str = "$1";

/// Aggregates of the hub's language other than `COUNT()`
/// (reference/iothub-rest-api.md §6).
const AGGREGATES: &[&str] = &["AVG", "SUM", "MIN", "MAX"];

const SHAPE_HELP: &str =
    "IoT Hub queries read like `SELECT * FROM devices WHERE tags.env = 'prod'`";

const COLLECTIONS_HELP: &str = "query `devices` or `devices.modules`";

/// Which twins a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.modules`: module twins.
    Modules,
}

/// What a query returns for the twins that match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `SELECT *`: the twins themselves.
    All,
    /// `SELECT COUNT() [AS alias]`: one row, `{alias: count}`; the alias is
    /// `$1` when none is written.
    Count {
        /// The key of the count in the row.
        alias: String,
    },
    /// `SELECT path [AS name], ...`: one object per twin, with the fields it defines.
    Fields(Vec<Field>),
}

/// One selected path and the key it is returned under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The keys from the twin's root, the first a twin field in its canonical
    /// spelling: `SELECT Properties.Reported.fw` gives `properties`,
    /// `reported`, `fw`. Never empty when parsed.
    pub keys: Vec<String>,
    /// The key in the result: the alias after `AS`, else the last key. Twin
    /// fields come back camelCase whatever their spelling in the query, as the
    /// hub returns them (`DeviceId` gives `deviceId`, query-twins.md); keys
    /// below them keep the user's spelling, since twin keys are case-sensitive.
    pub name: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// What the query returns.
    pub selection: Selection,
    /// Which twins it reads.
    pub collection: Collection,
    /// The WHERE condition, if any; in a `devices.modules` query its paths
    /// have lost any `devices.modules.` prefix.
    pub condition: Option<Condition>,
    /// `TOP n`: the most rows returned.
    pub top: Option<usize>,
}

impl Statement {
    /// Whether `twin` satisfies the WHERE condition (every twin does when there
    /// is none). The caller passes twins of [`collection`](Self::collection):
    /// device twins for `devices`, module twins for `devices.modules`.
    #[must_use]
    pub fn matches(&self, twin: &Value) -> bool {
        self.condition.as_ref().is_none_or(|c| c.matches(twin))
    }

    /// The row `twin` gives: a clone of the twin for `SELECT *`; for fields, an
    /// object with each field the twin defines, under its name; for `COUNT()`,
    /// the count row of this twin alone, `{alias: 1}` (use [`rows`](Self::rows)
    /// to count many).
    #[must_use]
    pub fn project(&self, twin: &Value) -> Value {
        match &self.selection {
            Selection::All => twin.clone(),
            Selection::Count { alias } => count_row(alias, 1),
            Selection::Fields(fields) => {
                let mut row = Map::new();
                for field in fields {
                    if let Some(value) = field.value(twin) {
                        row.insert(field.name.clone(), value.clone());
                    }
                }
                Value::Object(row)
            }
        }
    }

    /// The result over `twins`, in their order: the rows of those that match,
    /// at most `TOP n` of them; for `COUNT()`, one row with the number that
    /// match (none under `TOP 0`).
    #[must_use]
    pub fn rows<'t>(&self, twins: impl IntoIterator<Item = &'t Value>) -> Vec<Value> {
        let limit = self.top.unwrap_or(usize::MAX);
        let matching = twins.into_iter().filter(|twin| self.matches(twin));
        match &self.selection {
            Selection::Count { alias } if limit > 0 => vec![count_row(alias, matching.count())],
            Selection::Count { .. } => Vec::new(),
            Selection::All | Selection::Fields(_) => matching
                .take(limit)
                .map(|twin| self.project(twin))
                .collect(),
        }
    }
}

impl Statement {
    /// The result of a `COUNT()` query over `count` matching twins: one row,
    /// none under `TOP 0`; no rows for other selections.
    #[must_use]
    pub fn count_rows(&self, count: usize) -> Vec<Value> {
        match &self.selection {
            Selection::Count { alias } if self.top != Some(0) => vec![count_row(alias, count)],
            _ => Vec::new(),
        }
    }
}

impl Field {
    /// The value of this field in `twin`, if the twin defines it; keys match exactly.
    #[must_use]
    pub fn value<'t>(&self, twin: &'t Value) -> Option<&'t Value> {
        self.keys
            .iter()
            .try_fold(twin, |value, key| value.get(key.as_str()))
    }
}

fn count_row(alias: &str, count: usize) -> Value {
    let mut row = Map::new();
    row.insert(alias.to_owned(), Value::from(count));
    Value::Object(row)
}

/// Parses a whole query: `SELECT [TOP n] (* | COUNT() [AS name] | path [AS
/// name], ...) FROM (devices | devices.modules) [WHERE condition]`.
///
/// # Errors
///
/// [`QueryError`] with the byte span of the first problem: a malformed query
/// or condition, a part of the hub's language twinops does not evaluate
/// ([`QueryError::Unsupported`]), a query longer than
/// [`MAX_CHARS`](crate::query::MAX_CHARS), or a condition nested deeper than
/// [`MAX_DEPTH`](crate::query::MAX_DEPTH).
pub fn statement(text: &str) -> Result<Statement, QueryError> {
    check_length(text).map_err(|error| match error {
        QueryError::TooLong(error) => error.in_query().into(),
        error => error,
    })?;
    if text.trim().is_empty() {
        return Err(SyntaxError::new("empty query", text.len(), 0)
            .with_help(SHAPE_HELP)
            .into());
    }
    // The condition lexer refuses `*`, which only a selection may hold: find
    // the first one outside a string, blank it out (keeping every byte offset)
    // and lex again. A second `*` is an error wherever it is.
    let blanked: String;
    let (source, tokens, star) = match lexer::tokens(text) {
        Ok(tokens) => (text, tokens, None),
        Err(error) => {
            let offset = star_at(text, &error).ok_or(error)?;
            blanked = format!(
                "{} {}",
                text.get(..offset).unwrap_or_default(),
                text.get(offset + 1..).unwrap_or_default()
            );
            let tokens = lexer::tokens(&blanked)
                .map_err(|error| star_at(&blanked, &error).map_or(error, stray_star))?;
            (blanked.as_str(), tokens, Some(offset))
        }
    };
    let mut items: Vec<Item<'_>> = tokens.into_iter().map(Item::Token).collect();
    if let Some(offset) = star {
        let at = items.partition_point(|item| item.offset() < offset);
        items.insert(at, Item::Star(offset));
    }
    let (items, prefixes) = strip_module_prefixes(&items);
    Reader {
        text: source,
        items,
        pos: 0,
        prefixes,
    }
    .statement()
}

/// The offset of the `*` that `error` refuses, if that is what it refuses: the
/// lexer reports a lone `*` as a one-byte error on it, and nothing else so.
fn star_at(text: &str, error: &QueryError) -> Option<usize> {
    let offset = error.offset();
    (error.len() == 1 && text.get(offset..).is_some_and(|rest| rest.starts_with('*')))
        .then_some(offset)
}

/// A `*` anywhere but right after `SELECT` or `TOP n`.
fn stray_star(offset: usize) -> QueryError {
    SyntaxError::new("unexpected `*`", offset, 1)
        .with_help("`*` selects whole twins right after `SELECT`; arithmetic is not supported")
        .into()
}

/// A byte offset and length in the statement.
type Span = (usize, usize);

/// One token of a statement: the lexer's, or a `*`, which it does not make.
#[derive(Debug, Clone)]
enum Item<'a> {
    Token(Token<'a>),
    Star(usize),
}

impl Item<'_> {
    fn offset(&self) -> usize {
        match self {
            Self::Token(token) => token.offset,
            Self::Star(offset) => *offset,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Token(token) => token.len,
            Self::Star(_) => 1,
        }
    }

    fn kind(&self) -> Option<&TokenKind<'_>> {
        match self {
            Self::Token(token) => Some(&token.kind),
            Self::Star(_) => None,
        }
    }

    /// Whether this is the word `keyword`, in any case.
    fn is_word(&self, keyword: &str) -> bool {
        matches!(self.kind(), Some(TokenKind::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn is(&self, kind: &TokenKind<'_>) -> bool {
        self.kind() == Some(kind)
    }
}

/// Drops every `devices.modules.` that starts a path, and returns the byte
/// spans of those dropped. A path starts wherever a word follows anything but
/// a `.` (then it is a key) or `FROM` (then it is the collection).
fn strip_module_prefixes<'a>(items: &[Item<'a>]) -> (Vec<Item<'a>>, Vec<Span>) {
    let mut kept: Vec<Item<'a>> = Vec::with_capacity(items.len());
    let mut prefixes = Vec::new();
    let mut i = 0;
    while let Some(item) = items.get(i) {
        let starts_path = !kept
            .last()
            .is_some_and(|last| last.is(&TokenKind::Dot) || last.is_word("FROM"));
        if let Some([devices, dot, modules, second_dot, next]) = items.get(i..i + 5) {
            let is_prefix = devices.is_word("devices")
                && dot.is(&TokenKind::Dot)
                && modules.is_word("modules")
                && second_dot.is(&TokenKind::Dot)
                && matches!(next.kind(), Some(TokenKind::Word(_)));
            if starts_path && is_prefix {
                let end = second_dot.offset() + second_dot.len();
                prefixes.push((devices.offset(), end - devices.offset()));
                i += 4;
                continue;
            }
        }
        kept.push(item.clone());
        i += 1;
    }
    (kept, prefixes)
}

/// Reads a statement's items from left to right.
struct Reader<'a> {
    /// The statement, its first `*` blanked out.
    text: &'a str,
    items: Vec<Item<'a>>,
    /// Index of the next unread item.
    pos: usize,
    /// Byte spans of the `devices.modules.` prefixes dropped from paths.
    prefixes: Vec<Span>,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<&Item<'a>> {
        self.items.get(self.pos)
    }

    fn peek_second(&self) -> Option<&Item<'a>> {
        self.items.get(self.pos + 1)
    }

    fn advance(&mut self) -> Option<Item<'a>> {
        let item = self.items.get(self.pos).cloned();
        self.pos += usize::from(item.is_some());
        item
    }

    /// Whether the next item is the word `keyword`, in any case.
    fn at_word(&self, keyword: &str) -> bool {
        self.peek().is_some_and(|item| item.is_word(keyword))
    }

    fn at(&self, kind: &TokenKind<'_>) -> bool {
        self.peek().is_some_and(|item| item.is(kind))
    }

    /// The source text of `item`.
    fn text_of(&self, item: &Item<'_>) -> &'a str {
        match item {
            Item::Star(_) => "*",
            Item::Token(token) => self
                .text
                .get(token.offset..token.offset + token.len)
                .unwrap_or_default(),
        }
    }

    /// `item` as the user wrote it, for "found ..." in messages.
    fn describe(&self, item: Option<&Item<'_>>) -> String {
        match item {
            Some(item) => quote(self.text_of(item)),
            None => "end of query".to_owned(),
        }
    }

    /// An error at the next item, or at the end of the text.
    fn error_here(&self, message: impl Into<String>) -> SyntaxError {
        match self.peek() {
            Some(item) => SyntaxError::new(message, item.offset(), item.len()),
            None => SyntaxError::new(message, self.text.len(), 0),
        }
    }

    /// "expected X after `Y`, found Z" at the next item.
    fn expected(&self, what: &str) -> SyntaxError {
        let after = match self.pos.checked_sub(1).and_then(|i| self.items.get(i)) {
            Some(item) => format!(" after {}", self.describe(Some(item))),
            None => String::new(),
        };
        let found = self.describe(self.peek());
        self.error_here(format!("expected {what}{after}, found {found}"))
    }

    /// The lexer's tokens among `items`, for the condition parser; a `*` among
    /// them is an error.
    fn tokens_of(items: &[Item<'a>]) -> Result<Vec<Token<'a>>, QueryError> {
        items
            .iter()
            .map(|item| match item {
                Item::Token(token) => Ok(token.clone()),
                Item::Star(offset) => Err(stray_star(*offset)),
            })
            .collect()
    }

    fn statement(mut self) -> Result<Statement, QueryError> {
        self.reject_clauses()?;
        if !self.at_word("SELECT") {
            return Err(self.expected("`SELECT`").with_help(SHAPE_HELP).into());
        }
        self.advance();
        let top = self.top()?;
        let selection = self.selection()?;
        if !self.at_word("FROM") {
            let error = match selection {
                Selection::Fields(_) => self.expected("`,` or `FROM`"),
                Selection::All | Selection::Count { .. } if self.at(&TokenKind::Comma) => self
                    .expected("`FROM`")
                    .with_help("`*` and `COUNT()` are selected alone"),
                Selection::All | Selection::Count { .. } => self.expected("`FROM`"),
            };
            return Err(error.into());
        }
        self.advance();
        let collection = self.collection()?;
        if let (Collection::Devices, Some(&(offset, len))) = (collection, self.prefixes.first()) {
            return Err(SyntaxError::new(
                "`devices.modules.` starts a path only in a query `FROM devices.modules`",
                offset,
                len,
            )
            .with_help("drop the prefix, or query `FROM devices.modules`")
            .into());
        }
        let condition = self.condition()?;
        Ok(Statement {
            selection,
            collection,
            condition,
            top,
        })
    }

    /// Refuses `GROUP BY` and `ORDER BY` wherever they are, so that a user who
    /// wrote one learns it is unsupported rather than misplaced.
    fn reject_clauses(&self) -> Result<(), QueryError> {
        for (i, pair) in self.items.windows(2).enumerate() {
            let [first, second] = pair else { continue };
            let is_key = i
                .checked_sub(1)
                .and_then(|before| self.items.get(before))
                .is_some_and(|before| before.is(&TokenKind::Dot));
            if is_key || !second.is_word("BY") {
                continue;
            }
            let (clause, help) = if first.is_word("GROUP") {
                (
                    "GROUP BY",
                    "count each group with its own query, like `SELECT COUNT() FROM devices WHERE tags.site = 'ams1'`",
                )
            } else if first.is_word("ORDER") {
                ("ORDER BY", "sort the rows after reading them")
            } else {
                continue;
            };
            let len = second.offset() + second.len() - first.offset();
            return Err(
                UnsupportedError::new(format!("`{clause}`"), first.offset(), len)
                    .with_help(help)
                    .into(),
            );
        }
        Ok(())
    }

    /// `TOP n`, if present.
    fn top(&mut self) -> Result<Option<usize>, QueryError> {
        const TOP_HELP: &str = "write the most rows to return, like `TOP 10`";
        if !self.at_word("TOP") {
            return Ok(None);
        }
        self.advance();
        let number = match self.peek().and_then(Item::kind) {
            Some(TokenKind::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => return Err(self.expected("a number").with_help(TOP_HELP).into()),
        };
        let Some(top) = number else {
            let found = self.describe(self.peek());
            return Err(self
                .error_here(format!("`TOP` takes a whole number, found {found}"))
                .with_help(TOP_HELP)
                .into());
        };
        self.advance();
        Ok(Some(top))
    }

    /// `*`, `COUNT() [AS name]`, or fields.
    fn selection(&mut self) -> Result<Selection, QueryError> {
        if matches!(self.peek(), Some(Item::Star(_))) {
            self.advance();
            return Ok(Selection::All);
        }
        if self.at_word("COUNT")
            && self
                .peek_second()
                .is_some_and(|item| item.is(&TokenKind::LParen))
        {
            return self.count();
        }
        let mut fields = Vec::new();
        let mut names = BTreeSet::new();
        let mut what = "`*`, `COUNT()` or a twin path";
        loop {
            let (field, (offset, len)) = self.field(what)?;
            if !names.insert(field.name.clone()) {
                return Err(SyntaxError::new(
                    format!("duplicate field name `{}`", field.name),
                    offset,
                    len,
                )
                .with_help("give one of them another name with `AS`")
                .into());
            }
            fields.push(field);
            if !self.at(&TokenKind::Comma) {
                return Ok(Selection::Fields(fields));
            }
            self.advance();
            what = "a twin path";
        }
    }

    /// `COUNT ( ) [AS name]`, the next items being `COUNT (`.
    fn count(&mut self) -> Result<Selection, QueryError> {
        let (Some(_), Some(open)) = (self.advance(), self.advance()) else {
            return Err(self.expected("`COUNT()`").into());
        };
        match self.peek() {
            Some(item) if item.is(&TokenKind::RParen) => {
                self.advance();
            }
            None => {
                return Err(
                    SyntaxError::new("`(` is never closed", open.offset(), open.len()).into(),
                );
            }
            Some(item) => {
                let found = self.describe(Some(item));
                return Err(self
                    .error_here(format!("`COUNT()` takes no argument, found {found}"))
                    .with_help("`COUNT()` counts the twins that match")
                    .into());
            }
        }
        let alias = match self.alias()? {
            Some((alias, _)) => alias,
            None => COUNT_ALIAS.to_owned(),
        };
        Ok(Selection::Count { alias })
    }

    /// `AS name`, if present: the name and its byte span.
    fn alias(&mut self) -> Result<Option<(String, Span)>, QueryError> {
        if !self.at_word("AS") {
            return Ok(None);
        }
        self.advance();
        let alias = match self.peek() {
            Some(Item::Token(Token {
                kind: TokenKind::Word(word),
                offset,
                len,
            })) if !is_reserved(word) => ((*word).to_owned(), (*offset, *len)),
            _ => return Err(self.expected("a name").into()),
        };
        self.advance();
        Ok(Some(alias))
    }

    /// `path [AS name]`, and the span of the name (the alias, else the path).
    /// `what` says what was expected, for the error when no path is there.
    fn field(&mut self, what: &str) -> Result<(Field, Span), QueryError> {
        let start = self.pos;
        let first = match self.peek() {
            Some(Item::Token(
                token @ Token {
                    kind: TokenKind::Word(word),
                    ..
                },
            )) if !is_reserved(word) => token.clone(),
            _ => return Err(self.expected(what).into()),
        };
        if self
            .peek_second()
            .is_some_and(|item| item.is(&TokenKind::LParen))
        {
            return Err(self.function(&first));
        }
        self.advance();
        // The path's extent: each `.` or `[` with what follows it, well formed
        // or not, so that the condition parser reports what is wrong in it.
        loop {
            if self.at(&TokenKind::Dot) {
                self.advance();
                self.advance();
            } else if self.at(&TokenKind::LBracket) {
                self.advance();
                self.advance();
                self.advance();
            } else {
                break;
            }
        }
        let extent = self.items.get(start..self.pos).unwrap_or_default();
        let end = extent
            .last()
            .map_or(first.offset, |last| last.offset() + last.len());
        let span = (first.offset, end - first.offset);
        // INVARIANT: an extent that starts with a word that is not reserved
        // parses as a path or not at all; the `else` only keeps this total.
        let Expr::Value(Operand::Path(path)) =
            parser::expression(self.text, Self::tokens_of(extent)?)?
        else {
            let written = self.text.get(span.0..end).unwrap_or_default();
            return Err(SyntaxError::new(
                format!("expected a twin path, found {}", quote(written)),
                span.0,
                span.1,
            )
            .into());
        };
        let keys = path.keys().to_vec();
        let (name, span) = match self.alias()? {
            Some(alias) => alias,
            None => (keys.last().cloned().unwrap_or_default(), span),
        };
        Ok((Field { keys, name }, span))
    }

    /// A function call in a selection, `name` being its name.
    fn function(&self, name: &Token<'_>) -> QueryError {
        let word = self.text_of(&Item::Token(name.clone()));
        match AGGREGATES.iter().find(|a| a.eq_ignore_ascii_case(word)) {
            Some(aggregate) => {
                UnsupportedError::new(format!("`{aggregate}`"), name.offset, name.len)
                    .with_help("`COUNT()` is the only aggregate supported")
                    .into()
            }
            None => UnknownFunctionError::new(
                word,
                name.offset,
                "a query selects `*`, `COUNT()` or twin paths".to_owned(),
            )
            .into(),
        }
    }

    /// `devices` or `devices.modules`, after `FROM`.
    fn collection(&mut self) -> Result<Collection, QueryError> {
        let mut words = Vec::new();
        let (start, mut end) = match self.peek() {
            Some(
                item @ Item::Token(Token {
                    kind: TokenKind::Word(word),
                    ..
                }),
            ) if !is_reserved(word) => {
                words.push(*word);
                (item.offset(), item.offset() + item.len())
            }
            _ => {
                return Err(self
                    .expected("a collection")
                    .with_help(COLLECTIONS_HELP)
                    .into());
            }
        };
        self.advance();
        while self.at(&TokenKind::Dot) {
            let Some(Item::Token(Token {
                kind: TokenKind::Word(word),
                offset,
                len,
            })) = self.peek_second()
            else {
                break;
            };
            words.push(*word);
            end = offset + len;
            self.advance();
            self.advance();
        }
        let name = words.join(".");
        match name.to_ascii_lowercase().as_str() {
            "devices" => Ok(Collection::Devices),
            "devices.modules" => Ok(Collection::Modules),
            "devices.jobs" => Err(
                UnsupportedError::new(format!("`{name}`"), start, end - start)
                    .with_help(COLLECTIONS_HELP)
                    .into(),
            ),
            _ => {
                let lower = name.to_ascii_lowercase();
                let near = ["devices", "devices.modules"]
                    .into_iter()
                    .map(|c| (strsim::damerau_levenshtein(&lower, c), c))
                    .filter(|(distance, _)| *distance <= lower.chars().count().div_ceil(3))
                    .min_by_key(|(distance, _)| *distance);
                let help = match near {
                    Some((_, near)) => format!("did you mean `{near}`?"),
                    None => COLLECTIONS_HELP.to_owned(),
                };
                Err(
                    SyntaxError::new(format!("unknown collection `{name}`"), start, end - start)
                        .with_help(help)
                        .into(),
                )
            }
        }
    }

    /// `WHERE condition` to the end of the text, or nothing.
    fn condition(&mut self) -> Result<Option<Condition>, QueryError> {
        match self.peek() {
            None => return Ok(None),
            Some(item) if item.is_word("WHERE") => {}
            Some(item) if item.is_word("JOIN") => {
                return Err(UnsupportedError::new("`JOIN`", item.offset(), item.len())
                    .with_help(
                        "IoT Hub queries cannot join; query `devices.modules` and filter on `deviceId`",
                    )
                    .into());
            }
            Some(_) => return Err(self.expected("`WHERE` or end of query").into()),
        }
        self.advance();
        let rest = self.items.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Err(self.expected("a condition").into());
        }
        let expr = parser::expression(self.text, Self::tokens_of(rest)?)?;
        self.pos = self.items.len();
        Ok(Some(Condition {
            scope: Scope::Where(expr),
        }))
    }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::query::{
        Collection, Field, MAX_CHARS, QueryError, Selection, Statement, parse, statement,
    };

    /// A small fleet: two device twins and a module twin.
    fn fleet() -> Vec<Value> {
        vec![
            json!({
                "deviceId": "ams1-01",
                "status": "enabled",
                "lastActivityTime": "2021-05-07T00:50:38Z",
                "tags": {"env": "prod", "my-key": 1},
                "properties": {"reported": {"fw": "2.1"}},
            }),
            json!({
                "deviceId": "dub2-01",
                "status": "enabled",
                "tags": {"env": "dev"},
            }),
            json!({
                "deviceId": "dub2-02",
                "status": "disabled",
                "tags": {"env": "prod"},
            }),
        ]
    }

    fn modules() -> Vec<Value> {
        vec![
            json!({"deviceId": "ams1-01", "moduleId": "azureiotsecurity", "properties": {"reported": {"scan": true}}}),
            json!({"deviceId": "ams1-01", "moduleId": "edgeAgent"}),
            json!({"deviceId": "dub2-01", "moduleId": "azureiotsecurity"}),
        ]
    }

    fn device_ids(rows: &[Value]) -> Vec<&str> {
        rows.iter()
            .map(|row| row["deviceId"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn select_star_from_devices_returns_every_twin_whole() {
        let query = statement("SELECT * FROM devices").unwrap();
        assert_eq!(
            query,
            Statement {
                selection: Selection::All,
                collection: Collection::Devices,
                condition: None,
                top: None,
            }
        );
        let fleet = fleet();
        assert_eq!(query.rows(&fleet), fleet);
        assert_eq!(query.project(&fleet[1]), fleet[1]);
    }

    #[test]
    fn where_filters_with_the_condition_parser() {
        let query =
            statement("SELECT * FROM devices WHERE tags.env = 'prod' AND status = 'enabled'")
                .unwrap();
        assert_eq!(
            query.condition,
            Some(parse("tags.env = 'prod' AND status = 'enabled'").unwrap())
        );
        assert_eq!(device_ids(&query.rows(&fleet())), vec!["ams1-01"]);
        assert!(!query.matches(&json!({"tags": {"env": "prod"}})));
    }

    #[test]
    fn module_queries_read_module_twins_with_or_without_the_prefix() {
        let plain =
            statement("SELECT * FROM devices.modules WHERE moduleId = 'azureiotsecurity'").unwrap();
        assert_eq!(plain.collection, Collection::Modules);
        let rows = plain.rows(&modules());
        assert_eq!(device_ids(&rows), vec!["ams1-01", "dub2-01"]);
        assert!(rows.iter().all(|row| row["moduleId"] == "azureiotsecurity"));

        let prefixed = statement(
            "SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'azureiotsecurity'",
        )
        .unwrap();
        assert_eq!(prefixed, plain);

        let mixed = statement(
            "SELECT devices.modules.deviceId FROM Devices.Modules \
             WHERE devices.modules.moduleId = 'azureiotsecurity' \
             AND IS_DEFINED(devices.modules.properties.reported.scan)",
        )
        .unwrap();
        assert_eq!(mixed.rows(&modules()), vec![json!({"deviceId": "ams1-01"})]);

        // A key that happens to be called `devices` is not a prefix.
        let key =
            statement("SELECT * FROM devices.modules WHERE tags.devices.modules.x = 1").unwrap();
        assert_eq!(
            key.condition.unwrap().paths(),
            vec!["tags.devices.modules.x"]
        );
    }

    #[test]
    fn count_is_one_row_named_dollar_one_unless_aliased() {
        let fleet = fleet();
        let unnamed = statement("SELECT COUNT() FROM devices").unwrap();
        assert_eq!(
            unnamed.selection,
            Selection::Count {
                alias: "$1".to_owned()
            }
        );
        assert_eq!(unnamed.rows(&fleet), vec![json!({"$1": 3})]);
        assert_eq!(unnamed.rows(&[]), vec![json!({"$1": 0})]);

        let named =
            statement("SELECT COUNT() AS numberOfDevices FROM devices WHERE tags.env = 'prod'")
                .unwrap();
        assert_eq!(named.rows(&fleet), vec![json!({"numberOfDevices": 2})]);
        assert_eq!(named.project(&fleet[0]), json!({"numberOfDevices": 1}));
    }

    #[test]
    fn projections_name_fields_by_alias_or_canonical_last_key() {
        let fleet = fleet();
        let query =
            statement("SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled'")
                .unwrap();
        let Selection::Fields(fields) = &query.selection else {
            panic!("{query:?}");
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["deviceId", "lastActivityTime"]);
        // A field the twin does not define is left out of its row.
        assert_eq!(
            query.rows(&fleet),
            vec![
                json!({"deviceId": "ams1-01", "lastActivityTime": "2021-05-07T00:50:38Z"}),
                json!({"deviceId": "dub2-01"}),
            ]
        );

        let aliased = statement(
            "SELECT deviceId AS id, Properties.Reported.fw AS firmware, tags['my-key'], tags.env \
             FROM devices",
        )
        .unwrap();
        assert_eq!(
            aliased.selection,
            Selection::Fields(vec![
                Field {
                    keys: vec!["deviceId".into()],
                    name: "id".into()
                },
                Field {
                    keys: vec!["properties".into(), "reported".into(), "fw".into()],
                    name: "firmware".into()
                },
                Field {
                    keys: vec!["tags".into(), "my-key".into()],
                    name: "my-key".into()
                },
                Field {
                    keys: vec!["tags".into(), "env".into()],
                    name: "env".into()
                },
            ])
        );
        assert_eq!(
            aliased.project(&fleet[0]),
            json!({"id": "ams1-01", "firmware": "2.1", "my-key": 1, "env": "prod"})
        );
        assert_eq!(aliased.project(&json!({})), json!({}));
    }

    #[test]
    fn top_limits_the_rows() {
        let fleet = fleet();
        let query = statement("SELECT TOP 2 * FROM devices").unwrap();
        assert_eq!(query.top, Some(2));
        assert_eq!(device_ids(&query.rows(&fleet)), vec!["ams1-01", "dub2-01"]);

        let fields =
            statement("SELECT TOP 1 deviceId FROM devices WHERE tags.env = 'prod'").unwrap();
        assert_eq!(fields.rows(&fleet), vec![json!({"deviceId": "ams1-01"})]);

        assert!(
            statement("SELECT TOP 0 * FROM devices")
                .unwrap()
                .rows(&fleet)
                .is_empty()
        );
        assert!(
            statement("SELECT TOP 0 COUNT() FROM devices")
                .unwrap()
                .rows(&fleet)
                .is_empty()
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_spacing_free() {
        assert_eq!(
            statement("select top 3 count() as n from DEVICES.Modules where moduleid = 'x'")
                .unwrap(),
            statement("SELECT TOP 3 COUNT() AS n FROM devices.modules WHERE moduleId = 'x'")
                .unwrap()
        );
        assert_eq!(
            statement("SeLeCt\n*\tfrom devices wHeRe tags.a = 1 Or NOT tags.b = 2").unwrap(),
            statement("SELECT * FROM devices WHERE tags.a = 1 OR NOT tags.b = 2").unwrap()
        );
        assert_eq!(
            statement("SELECT*FROM devices").unwrap(),
            statement("SELECT * FROM devices").unwrap()
        );
    }

    /// Malformed or unsupported queries and what the user sees: offset, the
    /// underlined text, the message and the help.
    const MALFORMED: &[(&str, usize, &str, &str, Option<&str>)] = &[
        (
            "",
            0,
            "",
            "empty query",
            Some("IoT Hub queries read like `SELECT * FROM devices WHERE tags.env = 'prod'`"),
        ),
        (
            "  \n ",
            4,
            "",
            "empty query",
            Some("IoT Hub queries read like `SELECT * FROM devices WHERE tags.env = 'prod'`"),
        ),
        (
            "tags.env = 'prod'",
            0,
            "tags",
            "expected `SELECT`, found `tags`",
            Some("IoT Hub queries read like `SELECT * FROM devices WHERE tags.env = 'prod'`"),
        ),
        (
            "SELECT *",
            8,
            "",
            "expected `FROM` after `*`, found end of query",
            None,
        ),
        (
            "SELECT * WHERE tags.a = 1",
            9,
            "WHERE",
            "expected `FROM` after `*`, found `WHERE`",
            None,
        ),
        (
            "SELECT deviceId devices",
            16,
            "devices",
            "expected `,` or `FROM` after `deviceId`, found `devices`",
            None,
        ),
        (
            "SELECT *, deviceId FROM devices",
            8,
            ",",
            "expected `FROM` after `*`, found `,`",
            Some("`*` and `COUNT()` are selected alone"),
        ),
        (
            "SELECT * FROM twins",
            14,
            "twins",
            "unknown collection `twins`",
            Some("query `devices` or `devices.modules`"),
        ),
        (
            "SELECT * FROM device.modules",
            14,
            "device.modules",
            "unknown collection `device.modules`",
            Some("did you mean `devices.modules`?"),
        ),
        (
            "SELECT * FROM WHERE tags.a = 1",
            14,
            "WHERE",
            "expected a collection after `FROM`, found `WHERE`",
            Some("query `devices` or `devices.modules`"),
        ),
        (
            "SELECT * FROM devices.jobs",
            14,
            "devices.jobs",
            "`devices.jobs` is not supported",
            Some("query `devices` or `devices.modules`"),
        ),
        (
            "SELECT * FROM devices foo",
            22,
            "foo",
            "expected `WHERE` or end of query after `devices`, found `foo`",
            None,
        ),
        (
            "SELECT * FROM devices WHERE tags.a = 1 LIMIT 5",
            39,
            "LIMIT",
            "expected `AND`, `OR` or end of condition after `1`, found `LIMIT`",
            None,
        ),
        (
            "SELECT * FROM devices WHERE",
            27,
            "",
            "expected a condition after `WHERE`, found end of query",
            None,
        ),
        (
            "SELECT COUNT() AS n FROM devices GROUP BY tags.site",
            33,
            "GROUP BY",
            "`GROUP BY` is not supported",
            Some(
                "count each group with its own query, like `SELECT COUNT() FROM devices WHERE tags.site = 'ams1'`",
            ),
        ),
        (
            "SELECT * FROM devices WHERE tags.a = 1 order  by deviceId",
            39,
            "order  by",
            "`ORDER BY` is not supported",
            Some("sort the rows after reading them"),
        ),
        (
            "SELECT AVG(properties.reported.t) FROM devices",
            7,
            "AVG",
            "`AVG` is not supported",
            Some("`COUNT()` is the only aggregate supported"),
        ),
        (
            "SELECT lower(deviceId) FROM devices",
            7,
            "lower",
            "unknown function `lower`",
            Some("a query selects `*`, `COUNT()` or twin paths"),
        ),
        (
            "SELECT * FROM devices JOIN devices.modules",
            22,
            "JOIN",
            "`JOIN` is not supported",
            Some("IoT Hub queries cannot join; query `devices.modules` and filter on `deviceId`"),
        ),
        (
            "SELECT COUNT(*) FROM devices",
            13,
            "*",
            "`COUNT()` takes no argument, found `*`",
            Some("`COUNT()` counts the twins that match"),
        ),
        ("SELECT COUNT(", 12, "(", "`(` is never closed", None),
        (
            "SELECT COUNT() AS FROM devices",
            18,
            "FROM",
            "expected a name after `AS`, found `FROM`",
            None,
        ),
        (
            "SELECT TOP -1 * FROM devices",
            11,
            "-1",
            "`TOP` takes a whole number, found `-1`",
            Some("write the most rows to return, like `TOP 10`"),
        ),
        (
            "SELECT TOP * FROM devices",
            11,
            "*",
            "expected a number after `TOP`, found `*`",
            Some("write the most rows to return, like `TOP 10`"),
        ),
        (
            "SELECT FROM devices",
            7,
            "FROM",
            "expected `*`, `COUNT()` or a twin path after `SELECT`, found `FROM`",
            None,
        ),
        (
            "SELECT deviceId, FROM devices",
            17,
            "FROM",
            "expected a twin path after `,`, found `FROM`",
            None,
        ),
        (
            "SELECT deviceId, tags.x AS deviceId FROM devices",
            27,
            "deviceId",
            "duplicate field name `deviceId`",
            Some("give one of them another name with `AS`"),
        ),
        (
            "SELECT tag.site FROM devices",
            7,
            "tag",
            "unknown twin field `tag`",
            Some("did you mean `tags`?"),
        ),
        (
            "SELECT tags['a' FROM devices",
            16,
            "FROM",
            "expected `]` after `'a'`, found `FROM`",
            None,
        ),
        // Errors inside the condition point into the whole statement.
        (
            "SELECT * FROM devices WHERE tags.a == 1",
            35,
            "==",
            "unknown operator `==`",
            Some("IoT Hub compares with a single `=`"),
        ),
        (
            "SELECT * FROM devices WHERE tag.a = 1",
            28,
            "tag",
            "unknown twin field `tag`",
            Some("did you mean `tags`?"),
        ),
        (
            "SELECT * FROM devices WHERE tags.a = 'x",
            37,
            "'x",
            "unterminated string: no closing `'`",
            None,
        ),
        (
            "SELECT * FROM devices WHERE tags.a =",
            36,
            "",
            "expected a value after `=`, found end of condition",
            None,
        ),
        (
            "SELECT * FROM devices WHERE tags.a = 2 * 3",
            39,
            "*",
            "unexpected `*`",
            Some("`*` selects whole twins right after `SELECT`; arithmetic is not supported"),
        ),
        (
            "SELECT deviceId FROM devices WHERE tags.a = 2 * 3",
            46,
            "*",
            "unexpected `*`",
            Some("`*` selects whole twins right after `SELECT`; arithmetic is not supported"),
        ),
        (
            "SELECT * FROM devices WHERE devices.modules.moduleId = 'x'",
            28,
            "devices.modules.",
            "`devices.modules.` starts a path only in a query `FROM devices.modules`",
            Some("drop the prefix, or query `FROM devices.modules`"),
        ),
        (
            "SELECT * FROM devices.modules WHERE devices.moduleId = 'x'",
            36,
            "devices",
            "unknown twin field `devices`",
            Some("did you mean `deviceId`?"),
        ),
    ];

    #[test]
    fn malformed_queries_point_at_the_offending_text() {
        let mut wrong = Vec::new();
        for &(text, offset, underlined, message, help) in MALFORMED {
            let error = statement(text).unwrap_err();
            let got_underlined = text.get(error.offset()..error.offset() + error.len());
            let got = (
                error.offset(),
                got_underlined,
                error.to_string(),
                error.help(),
            );
            let want = (
                offset,
                Some(underlined),
                message.to_owned(),
                help.map(str::to_owned),
            );
            if got != want {
                wrong.push(format!("{text}\n   got {got:?}\n  want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn unsupported_parts_have_their_own_variant_and_code() {
        use miette::Diagnostic;

        for text in [
            "SELECT * FROM devices GROUP BY tags.a",
            "SELECT * FROM devices.jobs",
            "SELECT SUM(tags.n) FROM devices",
        ] {
            let error = statement(text).unwrap_err();
            assert!(matches!(error, QueryError::Unsupported(_)), "{text}");
            assert_eq!(
                error.code().unwrap().to_string(),
                "twinops::query::unsupported"
            );
        }
    }

    #[test]
    fn length_limit_is_the_hubs() {
        let head = "SELECT * FROM devices WHERE tags.x = '";
        let at_limit = format!("{head}{}'", "a".repeat(MAX_CHARS - head.len() - 1));
        assert_eq!(at_limit.len(), MAX_CHARS);
        assert!(statement(&at_limit).is_ok());

        let over = format!("{head}{}'", "a".repeat(MAX_CHARS - head.len()));
        let error = statement(&over).unwrap_err();
        assert!(matches!(error, QueryError::TooLong(_)));
        assert_eq!((error.offset(), error.len()), (MAX_CHARS, 1));
        assert_eq!(
            error.to_string(),
            "query is 8193 characters long, over IoT Hub's limit of 8192"
        );
        assert_eq!(
            error.help().as_deref(),
            Some("IoT Hub rejects longer queries; shorten the condition or split the query")
        );
    }

    /// A query's error span lies inside the text on character boundaries, and
    /// is empty only at the end; a parsed query can be evaluated.
    fn assert_sane(text: &str) {
        match statement(text) {
            Ok(query) => {
                let twin = json!({"deviceId": "d", "tags": {"a": 1}});
                let _ = query.rows([&twin]);
            }
            Err(error) => {
                let end = error.offset() + error.len();
                assert!(end <= text.len(), "{text:?}: {error:?}");
                assert!(text.is_char_boundary(error.offset()), "{text:?}: {error:?}");
                assert!(text.is_char_boundary(end), "{text:?}: {error:?}");
                assert!(!error.to_string().contains('\n'), "{text:?}: {error}");
                assert!(
                    error.len() > 0 || error.offset() == text.len(),
                    "{text:?}: {error:?}"
                );
            }
        }
    }

    #[test]
    fn no_panic_on_truncations_of_valid_queries() {
        let valid = [
            "SELECT TOP 10 * FROM devices WHERE tags.env = 'prod' AND tags.site IN ['ams1', \"dub2\"]",
            "select count() as n from devices.modules where devices.modules.moduleId = 'é😀'",
            "SELECT deviceId, properties.reported.fw AS fw, tags['my-key'] FROM devices WHERE NOT IS_DEFINED(tags.x)",
            "SELECT * FROM devices GROUP BY tags.a",
        ];
        for text in valid {
            assert_sane(text);
            for (i, _) in text.char_indices() {
                assert_sane(text.get(..i).unwrap());
                assert_sane(text.get(i..).unwrap());
            }
        }
    }

    #[test]
    fn no_panic_on_random_input() {
        // xorshift64: deterministic, no dependency.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "SELECT",
            "select",
            "TOP",
            "5",
            "-1",
            "*",
            "COUNT",
            "count()",
            "(",
            ")",
            "AS",
            "x",
            "FROM",
            "devices",
            "modules",
            "jobs",
            ".",
            ",",
            "WHERE",
            "GROUP",
            "ORDER",
            "BY",
            "JOIN",
            "AVG",
            "tags",
            "deviceId",
            "moduleId",
            "=",
            "'a'",
            "'",
            "[",
            "]",
            "AND",
            "OR",
            "NOT",
            "IS_DEFINED",
            "é",
            "😀",
            " ",
            "\u{0}",
        ];
        for _ in 0..20_000 {
            let n = usize::try_from(next() % 14).unwrap();
            let mut text = String::new();
            for _ in 0..n {
                let i = usize::try_from(next() % pieces.len() as u64).unwrap();
                text.push_str(pieces[i]);
                if next() % 3 != 0 {
                    text.push(' ');
                }
            }
            assert_sane(&text);
        }
    }
}
