//! The lexer shared by every dialect's text format.
//!
//! One token set for all levels (`%value`, `@symbol`, `dialect.op`, numbers, strings and
//! punctuation) keeps the syntax family uniform and the parsers small. `//` starts a comment
//! that runs to the end of the line.

use crate::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// `%name` or `%"any text"`.
    Value(String),
    /// `@name` or `@"any text"`.
    Symbol(String),
    /// A bare word: letters, digits, `_`, `.`, starting with a letter or `_`.
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// Single punctuation: `( ) [ ] { } < > , = : * ? _` and `->` as `Arrow`.
    Punct(char),
    Arrow,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Value(v) => format!("'%{v}'"),
            Tok::Symbol(v) => format!("'@{v}'"),
            Tok::Ident(v) => format!("'{v}'"),
            Tok::Int(v) => format!("'{v}'"),
            Tok::Float(v) => format!("'{v}'"),
            Tok::Str(v) => format!("{v:?}"),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::Arrow => "'->'".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token and where it starts (1-based line and column), with its extent in the source
/// (char offsets) for callers that need the exact spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
    pub start: usize,
    pub end: usize,
}

/// Tokenises the whole input up front; IR files are small next to their weights.
pub fn lex(src: &str) -> Result<Vec<Spanned>> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, col, msg: String| Error::new(ErrorKind::Parse, msg).at_text(line, col);
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc, ti) = (line, col, i);
        let advance = |n: usize, i: &mut usize, col: &mut usize| {
            *i += n;
            *col += n;
        };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            advance(1, &mut i, &mut col);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '%' || c == '@' {
            let (name, n) = lex_name(&chars[i + 1..]).map_err(|m| err(tl, tc, m))?;
            advance(n + 1, &mut i, &mut col);
            let tok = if c == '%' {
                Tok::Value(name)
            } else {
                Tok::Symbol(name)
            };
            out.push(Spanned {
                tok,
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        if c == '"' {
            let (s, n) = lex_string(&chars[i..]).map_err(|m| err(tl, tc, m))?;
            advance(n, &mut i, &mut col);
            out.push(Spanned {
                tok: Tok::Str(s),
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'>') {
            advance(2, &mut i, &mut col);
            out.push(Spanned {
                tok: Tok::Arrow,
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        if c.is_ascii_digit()
            || ((c == '-' || c == '+')
                && chars
                    .get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == 'i'))
        {
            let (tok, n) = lex_number(&chars[i..]).map_err(|m| err(tl, tc, m))?;
            advance(n, &mut i, &mut col);
            out.push(Spanned {
                tok,
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let n = chars[i..].iter().take_while(|c| is_word_char(**c)).count();
            let word: String = chars[i..i + n].iter().collect();
            advance(n, &mut i, &mut col);
            let tok = match word.as_str() {
                "_" => Tok::Punct('_'),
                "inf" => Tok::Float(f64::INFINITY),
                "nan" => Tok::Float(f64::NAN),
                _ => Tok::Ident(word),
            };
            out.push(Spanned {
                tok,
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        if "()[]{}<>,=:*?".contains(c) {
            advance(1, &mut i, &mut col);
            out.push(Spanned {
                tok: Tok::Punct(c),
                line: tl,
                col: tc,
                start: ti,
                end: i,
            });
            continue;
        }
        return Err(err(tl, tc, format!("unexpected character '{c}'")));
    }
    out.push(Spanned {
        tok: Tok::Eof,
        line,
        col,
        start: chars.len(),
        end: chars.len(),
    });
    Ok(out)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

/// True when `name` can be printed without quotes after `%` or `@`.
pub fn is_bare_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_word_char)
}

/// Prints a value or symbol name, quoting it when it has characters a bare name cannot.
pub fn quote_name(name: &str) -> String {
    if is_bare_name(name) {
        name.to_string()
    } else {
        quote_string(name)
    }
}

/// A string literal with `"` and `\` and control characters escaped.
pub fn quote_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn lex_name(rest: &[char]) -> std::result::Result<(String, usize), String> {
    if rest.first() == Some(&'"') {
        return lex_string(rest);
    }
    let n = rest.iter().take_while(|c| is_word_char(**c)).count();
    if n == 0 {
        return Err("expected a name after '%' or '@'".into());
    }
    Ok((rest[..n].iter().collect(), n))
}

fn lex_string(rest: &[char]) -> std::result::Result<(String, usize), String> {
    let mut s = String::new();
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '"' => return Ok((s, i + 1)),
            '\\' => {
                let e = rest.get(i + 1).ok_or("unterminated escape")?;
                match e {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    '"' | '\\' => s.push(*e),
                    'u' => {
                        let close = rest[i..]
                            .iter()
                            .position(|c| *c == '}')
                            .ok_or("bad \\u escape")?;
                        let hex: String = rest[i + 3..i + close].iter().collect();
                        let v = u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape")?;
                        s.push(char::from_u32(v).ok_or("bad \\u escape")?);
                        i += close - 1;
                    }
                    other => return Err(format!("unknown escape '\\{other}'")),
                }
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

fn lex_number(rest: &[char]) -> std::result::Result<(Tok, usize), String> {
    let mut n = 0;
    if matches!(rest[0], '-' | '+') {
        n = 1;
    }
    if rest[n..].starts_with(&['i', 'n', 'f']) {
        let v = if rest[0] == '-' {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Ok((Tok::Float(v), n + 3));
    }
    let mut is_float = false;
    while n < rest.len() {
        let c = rest[n];
        if c.is_ascii_digit() {
            n += 1;
        } else if c == '.' && rest.get(n + 1).is_some_and(|d| d.is_ascii_digit()) {
            is_float = true;
            n += 1;
        } else if (c == 'e' || c == 'E')
            && (rest.get(n + 1).is_some_and(|d| d.is_ascii_digit())
                || (matches!(rest.get(n + 1), Some('-' | '+'))
                    && rest.get(n + 2).is_some_and(|d| d.is_ascii_digit())))
        {
            is_float = true;
            n += 2;
        } else {
            break;
        }
    }
    let text: String = rest[..n].iter().collect();
    if is_float {
        text.parse::<f64>()
            .map(|v| (Tok::Float(v), n))
            .map_err(|e| format!("bad number '{text}': {e}"))
    } else {
        text.parse::<i64>()
            .map(|v| (Tok::Int(v), n))
            .map_err(|e| format!("bad integer '{text}': {e}"))
    }
}

/// A cursor over tokens with the helpers every dialect parser needs.
pub struct Cursor {
    toks: Vec<Spanned>,
    pos: usize,
    src: Vec<char>,
}

impl Cursor {
    pub fn new(src: &str) -> Result<Self> {
        Ok(Cursor {
            toks: lex(src)?,
            pos: 0,
            src: src.chars().collect(),
        })
    }

    /// The current token as written in the source.
    pub fn peek_text(&self) -> String {
        let s = &self.toks[self.pos];
        self.src[s.start..s.end].iter().collect()
    }

    /// The current token as an f32 if it is a number, rounded once from its spelling:
    /// going through the f64 of [`Tok::Float`] rounds twice, which can be off by one ulp
    /// (`7.038531e-26` is one such shortest f32 spelling).
    pub fn peek_f32(&self) -> Option<f32> {
        match self.peek() {
            Tok::Int(_) | Tok::Float(_) => self.peek_text().parse::<f32>().ok(),
            _ => None,
        }
    }

    pub fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    pub fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    /// Not an `Iterator`: the cursor sticks at `Eof` instead of ending, which is what a
    /// parser that reports "expected X, found end of input" wants.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].tok.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    /// Line and column (1-based) of the current token, for errors of kinds other than
    /// `Parse` that still point into the text.
    pub fn pos(&self) -> (usize, usize) {
        let s = &self.toks[self.pos];
        (s.line, s.col)
    }

    /// An error located at the current token.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        let s = &self.toks[self.pos];
        Error::new(ErrorKind::Parse, msg).at_text(s.line, s.col)
    }

    pub fn unexpected(&self, wanted: &str) -> Error {
        self.error(format!(
            "expected {wanted}, found {}",
            self.peek().describe()
        ))
    }

    pub fn eat_punct(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }

    pub fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{c}'")))
        }
    }

    pub fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(w) if w == word) {
            self.next();
            true
        } else {
            false
        }
    }

    pub fn expect_ident(&mut self, word: &str) -> Result<()> {
        if self.eat_ident(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{word}'")))
        }
    }

    pub fn ident(&mut self) -> Result<String> {
        match self.peek().clone() {
            Tok::Ident(w) => {
                self.next();
                Ok(w)
            }
            _ => Err(self.unexpected("a name")),
        }
    }

    pub fn int(&mut self) -> Result<i64> {
        match *self.peek() {
            Tok::Int(v) => {
                self.next();
                Ok(v)
            }
            _ => Err(self.unexpected("an integer")),
        }
    }

    /// A number (an integer literal is accepted where a float is expected).
    pub fn number(&mut self) -> Result<f64> {
        match *self.peek() {
            Tok::Int(v) => {
                self.next();
                Ok(v as f64)
            }
            Tok::Float(v) => {
                self.next();
                Ok(v)
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    pub fn string(&mut self) -> Result<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("a string")),
        }
    }

    pub fn at_eof(&self) -> bool {
        *self.peek() == Tok::Eof
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_the_op_line() {
        let t =
            toks(r#"%c0 = graph.conv(%x, %"w/0:1") {strides=[2,-2], alpha=1.5e-3} : f32[1] // c"#);
        assert_eq!(t[0], Tok::Value("c0".into()));
        assert_eq!(t[2], Tok::Ident("graph.conv".into()));
        assert_eq!(t[6], Tok::Value("w/0:1".into()));
        assert!(t.contains(&Tok::Int(-2)));
        assert!(t.contains(&Tok::Float(1.5e-3)));
        assert_eq!(*t.last().unwrap(), Tok::Eof);
        assert_eq!(t.len(), 27);
    }

    #[test]
    fn names_quote_when_needed() {
        assert_eq!(quote_name("conv1.out"), "conv1.out");
        assert_eq!(quote_name("a/b:0"), "\"a/b:0\"");
        let src = format!("%{}", quote_name("we\"ird\\name\n"));
        assert_eq!(toks(&src)[0], Tok::Value("we\"ird\\name\n".into()));
    }

    #[test]
    fn reports_positions() {
        let e = lex("graph\n  $").unwrap_err();
        assert_eq!(e.location, crate::Location::Text { line: 2, col: 3 });
    }

    #[test]
    fn f32_from_the_spelling() {
        // Through f64 this rounds to the neighbouring f32.
        let c = Cursor::new("7.038531e-26 -inf nan 3").unwrap();
        assert_eq!(c.peek_f32().map(f32::to_bits), Some(0x15ae_43fd));
        assert_eq!(c.peek_text(), "7.038531e-26");
        let mut c = c;
        c.next();
        assert_eq!(c.peek_f32(), Some(f32::NEG_INFINITY));
        c.next();
        assert!(c.peek_f32().is_some_and(f32::is_nan));
        c.next();
        assert_eq!(c.peek_f32(), Some(3.0));
    }

    #[test]
    fn special_floats() {
        assert_eq!(toks("-inf inf nan")[0], Tok::Float(f64::NEG_INFINITY));
        assert!(matches!(toks("nan")[0], Tok::Float(v) if v.is_nan()));
    }
}
