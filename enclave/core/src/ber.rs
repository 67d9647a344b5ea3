//! A small BER reader, enough for KMS `CiphertextForRecipient` (CMS EnvelopedData).
//!
//! KMS emits BER with indefinite lengths (`0x80` + end-of-contents `00 00`), which DER-only parsers
//! reject, so this is hand-written. Supported: low tag numbers (< 31) of every class; definite
//! lengths in short form or long form with 1..=4 length octets; indefinite lengths on constructed
//! elements only. Nesting is limited to [`MAX_DEPTH`] and input to [`MAX_INPUT`] bytes. Every read
//! is bounds-checked; nothing is allocated from a declared length.

use thiserror::Error;

/// Deepest nesting accepted (a KMS envelope nests 10 deep).
pub const MAX_DEPTH: usize = 16;
/// Largest input accepted.
pub const MAX_INPUT: usize = 16 * 1024;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BerError {
    #[error("input is {actual} bytes; the limit is {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("truncated at offset {0}")]
    Truncated(usize),
    #[error("high tag numbers are not supported (offset {0})")]
    HighTag(usize),
    #[error("length of {0} octets is not supported")]
    LengthOctets(usize),
    #[error("indefinite length on a primitive element (offset {0})")]
    IndefinitePrimitive(usize),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{0}")]
    Unexpected(String),
}

/// Tag class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Universal,
    Application,
    ContextSpecific,
    Private,
}

/// One element: identifier plus the content octets (for indefinite lengths, the octets between
/// the header and the end-of-contents marker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    pub class: Class,
    pub constructed: bool,
    pub number: u8,
    pub content: &'a [u8],
    /// Offset of the element's first octet in the outermost input.
    pub offset: usize,
    /// Offset of the first content octet in the outermost input.
    pub content_offset: usize,
}

impl<'a> Element<'a> {
    /// True for a universal element with this tag number.
    pub fn is_universal(&self, number: u8) -> bool {
        self.class == Class::Universal && self.number == number
    }

    /// True for a context-specific element `[number]`.
    pub fn is_context(&self, number: u8) -> bool {
        self.class == Class::ContextSpecific && self.number == number
    }

    /// A reader over the children of a constructed element.
    pub fn children(&self, depth: usize) -> Result<Reader<'a>, BerError> {
        if !self.constructed {
            return Err(BerError::Unexpected(format!(
                "expected a constructed element at offset {}",
                self.offset
            )));
        }
        if depth >= MAX_DEPTH {
            return Err(BerError::TooDeep);
        }
        Ok(Reader { data: self.content, pos: 0, base: self.content_offset, depth: depth + 1 })
    }
}

pub const TAG_INTEGER: u8 = 2;
pub const TAG_OCTET_STRING: u8 = 4;
pub const TAG_NULL: u8 = 5;
pub const TAG_OID: u8 = 6;
pub const TAG_SEQUENCE: u8 = 16;
pub const TAG_SET: u8 = 17;

/// Sequential reader over a run of elements.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole input, which must hold exactly one top-level element when read with
    /// [`Reader::single`].
    pub fn new(data: &'a [u8]) -> Result<Self, BerError> {
        if data.len() > MAX_INPUT {
            return Err(BerError::TooLarge { limit: MAX_INPUT, actual: data.len() });
        }
        Ok(Self { data, pos: 0, base: 0, depth: 0 })
    }

    /// Reads the only element of the input; trailing bytes are an error.
    pub fn single(mut self) -> Result<Element<'a>, BerError> {
        let element = self.next_element()?;
        self.finish()?;
        Ok(element)
    }

    /// True when every element has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Errors unless every element has been read.
    pub fn finish(&self) -> Result<(), BerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(BerError::Unexpected(format!(
                "{} unexpected trailing bytes at offset {}",
                self.data.len() - self.pos,
                self.base + self.pos
            )))
        }
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self.data.get(self.pos).ok_or(BerError::Truncated(self.base + self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads the next element.
    pub fn next_element(&mut self) -> Result<Element<'a>, BerError> {
        let start = self.pos;
        let offset = self.base + start;
        let identifier = self.byte()?;
        let class = match identifier >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::ContextSpecific,
            _ => Class::Private,
        };
        let constructed = identifier & 0x20 != 0;
        let number = identifier & 0x1f;
        if number == 0x1f {
            return Err(BerError::HighTag(offset));
        }
        let first = self.byte()?;
        let mut content_offset = self.base + self.pos;
        let content = if first == 0x80 {
            if !constructed {
                return Err(BerError::IndefinitePrimitive(offset));
            }
            let content_start = self.pos;
            let content_end = self.skip_to_end_of_contents()?;
            self.data.get(content_start..content_end).ok_or(BerError::Truncated(offset))?
        } else {
            let len = if first & 0x80 == 0 {
                usize::from(first)
            } else {
                let octets = usize::from(first & 0x7f);
                if octets == 0 || octets > 4 {
                    return Err(BerError::LengthOctets(octets));
                }
                let mut len = 0usize;
                for _ in 0..octets {
                    len = (len << 8) | usize::from(self.byte()?);
                }
                len
            };
            content_offset = self.base + self.pos;
            let end = self.pos.checked_add(len).ok_or(BerError::Truncated(offset))?;
            let content = self.data.get(self.pos..end).ok_or(BerError::Truncated(offset))?;
            self.pos = end;
            content
        };
        Ok(Element { class, constructed, number, content, offset, content_offset })
    }

    /// Skips children until the end-of-contents marker; returns the offset where the marker
    /// starts and leaves the position after it.
    fn skip_to_end_of_contents(&mut self) -> Result<usize, BerError> {
        if self.depth >= MAX_DEPTH {
            return Err(BerError::TooDeep);
        }
        loop {
            if self.data.get(self.pos..self.pos + 2) == Some(&[0, 0]) {
                let end = self.pos;
                self.pos += 2;
                return Ok(end);
            }
            if self.pos >= self.data.len() {
                return Err(BerError::Truncated(self.base + self.pos));
            }
            // Parse (and discard) one child at one level deeper.
            let mut child =
                Reader { data: self.data, pos: self.pos, base: self.base, depth: self.depth + 1 };
            child.next_element()?;
            self.pos = child.pos;
        }
    }

    /// Reads the next element and checks its universal tag.
    pub fn expect_universal(&mut self, number: u8, what: &str) -> Result<Element<'a>, BerError> {
        let e = self.next_element()?;
        if !e.is_universal(number) {
            return Err(BerError::Unexpected(format!(
                "expected {what} at offset {}, found {:?} [{}]",
                e.offset, e.class, e.number
            )));
        }
        Ok(e)
    }

    /// Reads a primitive OCTET STRING.
    pub fn octet_string(&mut self, what: &str) -> Result<&'a [u8], BerError> {
        let e = self.expect_universal(TAG_OCTET_STRING, what)?;
        if e.constructed {
            return Err(BerError::Unexpected(format!("{what}: constructed OCTET STRING")));
        }
        Ok(e.content)
    }

    /// Reads an OBJECT IDENTIFIER and checks it equals `expected` (DER content octets).
    pub fn expect_oid(&mut self, expected: &[u8], what: &str) -> Result<(), BerError> {
        let e = self.expect_universal(TAG_OID, what)?;
        if e.constructed || e.content != expected {
            return Err(BerError::Unexpected(format!(
                "{what}: unexpected OID {} at offset {}",
                hex::encode(e.content),
                e.offset
            )));
        }
        Ok(())
    }

    /// Reads a small INTEGER and checks its value.
    pub fn expect_small_integer(&mut self, value: u8, what: &str) -> Result<(), BerError> {
        let e = self.expect_universal(TAG_INTEGER, what)?;
        if e.constructed || e.content != [value] {
            return Err(BerError::Unexpected(format!(
                "{what}: expected INTEGER {value}, found {}",
                hex::encode(e.content)
            )));
        }
        Ok(())
    }

    /// Reads a NULL.
    pub fn expect_null(&mut self, what: &str) -> Result<(), BerError> {
        let e = self.expect_universal(TAG_NULL, what)?;
        if e.constructed || !e.content.is_empty() {
            return Err(BerError::Unexpected(format!("{what}: malformed NULL")));
        }
        Ok(())
    }

    /// The current nesting depth.
    pub fn depth(&self) -> usize {
        self.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_lengths() {
        // SEQUENCE (indefinite) { INTEGER 2, OCTET STRING (long form, 1 octet) "ab" } EOC
        let data = [0x30, 0x80, 0x02, 0x01, 0x02, 0x04, 0x81, 0x02, b'a', b'b', 0x00, 0x00];
        let top = Reader::new(&data).unwrap().single().unwrap();
        assert!(top.is_universal(TAG_SEQUENCE) && top.constructed);
        assert_eq!(top.content.len(), 8);
        let mut children = top.children(0).unwrap();
        children.expect_small_integer(2, "version").unwrap();
        assert_eq!(children.octet_string("data").unwrap(), b"ab");
        children.finish().unwrap();
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "truncated"),
            (&[0x30], "truncated"),
            (&[0x30, 0x80, 0x02, 0x01, 0x02], "truncated"), // no EOC
            (&[0x04, 0x80, 0x00, 0x00], "indefinite length on a primitive"),
            (&[0x1f, 0x81, 0x01, 0x00], "high tag"),
            (&[0x04, 0x85, 1, 2, 3, 4, 5], "length of 5 octets"),
            (&[0x24, 0x80, 0x00], "truncated"),
            (&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], "truncated"),
            (&[0x04, 0x05, 1, 2], "truncated"),
            (&[0x04, 0x01, 1, 0xff], "trailing"),
        ];
        for (data, needle) in cases {
            let err = Reader::new(data).and_then(|r| r.single()).unwrap_err().to_string();
            assert!(err.contains(needle), "{data:02x?}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut data = Vec::new();
        for _ in 0..200 {
            data.extend_from_slice(&[0x30, 0x80]);
        }
        for _ in 0..200 {
            data.extend_from_slice(&[0x00, 0x00]);
        }
        assert_eq!(Reader::new(&data).and_then(|r| r.single()), Err(BerError::TooDeep));
        assert!(matches!(Reader::new(&vec![0u8; MAX_INPUT + 1]), Err(BerError::TooLarge { .. })));
    }
}
