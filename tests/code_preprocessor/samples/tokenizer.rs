//! A tiny tokenizer for arithmetic expressions.

use std::collections::HashMap;
use std::fmt::{self, Display};
use crate::error::ParseError;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Number(f64),
    Ident(String),
    Op(char),
}

/// Something that turns text into tokens.
pub trait Lexer: Iterator<Item = Token> + Send {
    /// The position of the next character.
    fn position(&self) -> usize;

    fn remaining(&self) -> usize {
        0
    }
}

/// Splits an input string into tokens.
pub struct Tokenizer<'a> {
    input: &'a str,
    pos: usize,
    keywords: HashMap<&'static str, Token>,
}

impl<'a> Tokenizer<'a> {
    /// Makes a tokenizer over `input`.
    pub fn new(input: &'a str) -> Self {
        let mut keywords = HashMap::new();
        keywords.insert("pi", Token::Number(std::f64::consts::PI));
        Tokenizer { input, pos: 0, keywords }
    }

    fn read_number(&mut self) -> Result<Token, ParseError> {
        fn is_digit(c: char) -> bool {
            c.is_ascii_digit() || c == '.'
        }
        let start = self.pos;
        while self.peek().map_or(false, is_digit) {
            self.pos += 1;
        }
        let text = &self.input[start..self.pos];
        text.parse::<f64>().map(Token::Number).map_err(ParseError::from)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }
}

impl Iterator for Tokenizer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let c = self.peek()?;
        if c.is_ascii_digit() {
            return self.read_number().ok();
        }
        self.pos += c.len_utf8();
        Some(Token::Op(c))
    }
}

impl Lexer for Tokenizer<'_> {
    fn position(&self) -> usize {
        self.pos
    }
}

impl Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}

pub mod util {
    use super::Tokenizer;

    /// Counts the tokens in `input`.
    pub fn count(input: &str) -> usize {
        Tokenizer::new(input).count()
    }
}
