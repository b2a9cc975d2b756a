//! CBOR (RFC 8949) for JSON values, without PostgreSQL: the writer of headers and numbers, the
//! single-pass reader into a [`Sink`], bignums and decimal fractions. Plain `#[test]`s cover it
//! without a server; `codec::jsonb` connects it to PostgreSQL's jsonb.
//!
//! jsonb values stored as CBOR (RFC 8949), losslessly.
//!
//! Encoding walks the jsonb with PostgreSQL's own iterator and writes CBOR as it goes; numbers
//! are read from `numeric`'s stored digits (never through a double):
//! - an integer that fits 64 bits is a CBOR integer; a larger one a bignum (tags 2 and 3);
//! - a number with a fraction that a double holds exactly and prints back as the same text
//!   (`12.25`, `0.5`) a float, the smallest of half, single and double precision that holds it;
//! - any other number a decimal fraction (tag 4): `[exponent, mantissa]`, the mantissa an integer
//!   or a bignum, the exponent minus the count of digits after the point, so `1.000` is
//!   `[-3, 1000]` and reads back as `1.000`, and `0.1` (no double is exactly 0.1) is `[-1, 1]`;
//! - strings, arrays, objects (keys in jsonb's order), booleans and null as themselves;
//! - no tag around the whole: 0.2.0 wrapped it in the self-described tag 55799, which decoders
//!   such as cbor2 6 read as immutable containers.
//!
//! Decoding accepts that, and any single CBOR item JSON can express, tagged 55799 or not:
//! floats (finite), integers, bignums, decimal fractions, text, arrays, maps with text keys
//! (definite or indefinite length), booleans, null. Anything else (byte strings, other tags,
//! undefined, NaN, non-text keys, trailing bytes, more than one item) is refused with the reason,
//! and so is nesting deeper than [`MAX_DEPTH`]. It reads the CBOR in one pass, without recursion,
//! into a [`Sink`]: PostgreSQL's jsonb builder in the server ([`decode_jsonb`]).

use ciborium::value::Value;
use ciborium_ll::{simple, Encoder, Header};
use std::borrow::Cow;
use std::fmt::Write;

/// Arrays and objects nested deeper than this are refused, on set and on get.
pub const MAX_DEPTH: usize = 256;

/// The self-described CBOR tag (RFC 8949 §3.4.6).
pub(super) const SELF_DESCRIBED: u64 = 55799;
pub(super) const POSITIVE_BIGNUM: u64 = 2;
pub(super) const NEGATIVE_BIGNUM: u64 = 3;
pub(super) const DECIMAL_FRACTION: u64 = 4;

/// Exponents of decimal fractions read back: beyond them the text would pass what `numeric`
/// holds (131,072 digits before the point, 16,383 after).
const MAX_EXPONENT: i64 = 131_072;
const MIN_EXPONENT: i64 = -16_383;
/// Digits `numeric` holds before the point and after it.
const MAX_WHOLE_DIGITS: usize = 131_072;
const MAX_FRACTION_DIGITS: usize = 16_383;
/// The longest bignum read: the most bytes a number of 147,455 decimal digits (all numeric holds)
/// can take. A longer one is refused before its digits are worked out.
const MAX_BIGNUM_BYTES: usize = 61_231;
/// Items (tokens or digit chunks) handled between two checks for a cancel.
pub(super) const INTERRUPT_CHECK_PERIOD: usize = 4096;

/// Why a value cannot be stored or read as JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not one well-formed CBOR item, or one JSON cannot express; says which.
    Invalid(String),
}

pub(super) fn invalid(what: impl Into<String>) -> JsonError {
    JsonError::Invalid(what.into())
}

/// Writes `header` (RFC 8949 §3) with ciborium-ll's encoder: the argument in the fewest bytes,
/// floats in the narrowest width that holds them.
pub(super) fn push(out: &mut Vec<u8>, header: Header) {
    Encoder::from(out).push(header).expect("writing to a Vec cannot fail");
}

/// The CBOR item of a number given as `numeric`'s output: `-?digits(.digits)?`; `check` is
/// called now and then while a long one is converted.
pub(super) fn write_number_text(out: &mut Vec<u8>, text: &str, check: fn()) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{whole}{fraction}");
    let scale = fraction.len() as u32;
    match signed_integer(negative, &digits) {
        Some(mantissa) => write_decimal(out, mantissa, scale),
        None => {
            let mantissa = bignum(negative, &digits, check);
            let item = match scale {
                0 => mantissa,
                _ => Value::Tag(
                    DECIMAL_FRACTION,
                    Box::new(Value::Array(vec![Value::Integer((-i64::from(scale)).into()), mantissa])),
                ),
            };
            ciborium::into_writer(&item, out).expect("writing to a Vec cannot fail");
        }
    }
}

/// `-digits` or `digits` when it fits 64 bits.
pub(super) fn signed_integer(negative: bool, digits: &str) -> Option<i64> {
    let magnitude: u64 = digits.parse().ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// The CBOR item of `mantissa × 10^-scale`: an integer, an exact float, or a decimal fraction.
pub(super) fn write_decimal(out: &mut Vec<u8>, mantissa: i64, scale: u32) {
    if scale == 0 {
        push(out, integer_header(mantissa));
    } else if let Some(float) = exact_float(mantissa, scale) {
        push(out, Header::Float(float));
    } else {
        push(out, Header::Tag(DECIMAL_FRACTION));
        push(out, Header::Array(Some(2)));
        push(out, integer_header(-i64::from(scale)));
        push(out, integer_header(mantissa));
    }
}

pub(super) fn integer_header(n: i64) -> Header {
    if n >= 0 {
        Header::Positive(n as u64)
    } else {
        // A negative integer n is written as -1 - n.
        Header::Negative(!n as u64)
    }
}

/// The double of `mantissa × 10^-scale` when it is exactly that number and prints back as
/// exactly its text (`12.25`, not `0.1` or `1.50`).
pub(super) fn exact_float(mantissa: i64, scale: u32) -> Option<f64> {
    // mantissa / 10^scale is a binary fraction exactly when 5^scale divides the mantissa; it is
    // then (mantissa / 5^scale) / 2^scale, exact in a double below 2^53.
    let five_to_scale = 5i64.checked_pow(scale)?;
    if mantissa.unsigned_abs() >= 1 << 53 || mantissa % five_to_scale != 0 {
        return None;
    }
    let float = (mantissa / five_to_scale) as f64 / 2f64.powi(scale as i32);
    (format!("{float}") == decimal_text(mantissa < 0, &mantissa.unsigned_abs().to_string(), scale as usize))
        .then_some(float)
}

/// A bignum of the integer given by its decimal digits.
pub(super) fn bignum(negative: bool, digits: &str, check: fn()) -> Value {
    let magnitude = decimal_to_bytes(digits, check);
    if negative {
        // A negative bignum n stands for -1 - n.
        Value::Tag(NEGATIVE_BIGNUM, Box::new(Value::Bytes(subtract_one(magnitude))))
    } else {
        Value::Tag(POSITIVE_BIGNUM, Box::new(Value::Bytes(magnitude)))
    }
}

/// Big-endian bytes of a non-negative decimal number, without leading zero bytes. Nine digits
/// at a time into base-2^32 limbs: quadratic in the length, as schoolbook conversion is, with
/// `check` called between chunks (numeric's 147,455 digits at most reach here).
pub(super) fn decimal_to_bytes(digits: &str, check: fn()) -> Vec<u8> {
    // Little-endian base-2^32 limbs.
    let mut limbs: Vec<u32> = Vec::new();
    let bytes = digits.as_bytes();
    let first = bytes.len() % 9;
    let chunks =
        std::iter::once(&bytes[..first]).filter(|chunk| !chunk.is_empty()).chain(bytes[first..].chunks(9));
    for (index, chunk) in chunks.enumerate() {
        if index % INTERRUPT_CHECK_PERIOD == 0 {
            check();
        }
        let multiplier = 10u64.pow(chunk.len() as u32);
        let mut carry = chunk.iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
        for limb in &mut limbs {
            let value = u64::from(*limb) * multiplier + carry;
            *limb = value as u32;
            carry = value >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut out: Vec<u8> = limbs.iter().rev().flat_map(|limb| limb.to_be_bytes()).collect();
    let leading = out.iter().take_while(|b| **b == 0).count();
    out.drain(..leading);
    out
}

/// The decimal digits of big-endian `bytes`: repeated division of base-2^32 limbs by 10^9, with
/// `check` called between divisions. The caller bounds the length ([`MAX_BIGNUM_BYTES`]).
pub(super) fn bytes_to_decimal(bytes: &[u8], check: fn()) -> String {
    let bytes = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
    // Big-endian limbs, the first one padded at the front.
    let padding = (4 - bytes.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(0u8, padding).chain(bytes.iter().copied()).collect();
    let mut limbs: Vec<u32> =
        padded.chunks_exact(4).map(|limb| u32::from_be_bytes([limb[0], limb[1], limb[2], limb[3]])).collect();
    let mut start = 0;
    let mut chunks = Vec::new();
    while start < limbs.len() {
        if chunks.len() % INTERRUPT_CHECK_PERIOD == 0 {
            check();
        }
        let mut remainder = 0u64;
        for limb in &mut limbs[start..] {
            let value = (remainder << 32) | u64::from(*limb);
            *limb = (value / 1_000_000_000) as u32;
            remainder = value % 1_000_000_000;
        }
        chunks.push(remainder);
        while start < limbs.len() && limbs[start] == 0 {
            start += 1;
        }
    }
    let mut text = chunks.last().map_or_else(|| "0".to_owned(), u64::to_string);
    for chunk in chunks.iter().rev().skip(1) {
        write!(text, "{chunk:09}").expect("writing to a String");
    }
    text
}

fn subtract_one(mut bytes: Vec<u8>) -> Vec<u8> {
    for byte in bytes.iter_mut().rev() {
        if *byte > 0 {
            *byte -= 1;
            break;
        }
        *byte = 0xff;
    }
    let leading = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..leading);
    bytes
}

fn add_one(bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for byte in bytes.iter_mut().rev() {
        if *byte < 0xff {
            *byte += 1;
            return bytes;
        }
        *byte = 0;
    }
    bytes.insert(0, 1);
    bytes
}

/// The decimal text of `±digits × 10^-scale`: the point `scale` digits from the right.
pub(super) fn decimal_text(negative: bool, digits: &str, scale: usize) -> String {
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{}{digits}", "0".repeat((scale + 1).saturating_sub(digits.len())));
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A JSON number read from CBOR.
#[derive(Debug, PartialEq)]
pub enum Number {
    Integer(i64),
    /// `mantissa × 10^-scale`, `scale` digits after the point.
    Decimal {
        mantissa: i64,
        scale: u32,
    },
    /// Any other, as its exact decimal text.
    Text(String),
}

impl Number {
    pub(super) fn text(&self) -> String {
        match self {
            Number::Integer(n) => n.to_string(),
            Number::Decimal { mantissa, scale } => {
                decimal_text(*mantissa < 0, &mantissa.unsigned_abs().to_string(), *scale as usize)
            }
            Number::Text(text) => text.clone(),
        }
    }
}

/// A JSON scalar read from CBOR; strings borrow the CBOR bytes unless they came in segments.
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    String(Cow<'a, str>),
    Number(Number),
}

/// What the decoder reads, in document order: containers open and close around their keys and
/// values; a key is always followed by its value.
pub trait Sink<'a> {
    /// Called now and then while the decoder works: in a backend, a check for a cancel.
    fn check_interrupts() {}
    fn begin(&mut self, object: bool);
    fn end(&mut self, object: bool);
    fn key(&mut self, key: Cow<'a, str>);
    fn scalar(&mut self, scalar: Scalar<'a>);
}

/// A container being read.
struct Open {
    object: bool,
    /// Elements or pairs still to come; None until a break (indefinite length).
    remaining: Option<usize>,
    /// A key was read, its value is next.
    awaiting_value: bool,
}

/// Reads the single CBOR item `bytes` holds into `sink`.
pub fn decode<'a, S: Sink<'a>>(bytes: &'a [u8], sink: &mut S) -> Result<(), JsonError> {
    let mut reader = Reader { bytes, position: 0, check: S::check_interrupts };
    let mut open: Vec<Open> = Vec::new();
    let mut items = 0usize;
    let mut header = reader.pull()?;
    if header == Header::Tag(SELF_DESCRIBED) {
        header = reader.pull()?;
    }
    loop {
        let key_expected = open.last().is_some_and(|top| top.object && !top.awaiting_value);
        if header == Header::Break {
            match open.pop() {
                Some(top) if top.remaining.is_none() && !top.awaiting_value => sink.end(top.object),
                _ => return Err(invalid("not well-formed CBOR: a break where an item belongs")),
            }
        } else if key_expected {
            let Header::Text(length) = header else {
                return Err(invalid("a map key that is not text"));
            };
            sink.key(reader.text(length)?);
            open.last_mut().expect("in an object").awaiting_value = true;
            header = reader.pull()?;
            continue;
        } else if let Header::Array(length) | Header::Map(length) = header {
            let object = matches!(header, Header::Map(_));
            if open.len() >= MAX_DEPTH {
                return Err(JsonError::TooDeep);
            }
            sink.begin(object);
            if length != Some(0) {
                open.push(Open { object, remaining: length, awaiting_value: false });
                header = reader.pull()?;
                continue;
            }
            sink.end(object);
        } else {
            sink.scalar(reader.scalar(header)?);
        }
        // An item is complete: count it in its container, closing those it fills.
        while let Some(top) = open.last_mut() {
            top.awaiting_value = false;
            match &mut top.remaining {
                Some(1) => {
                    let object = top.object;
                    open.pop();
                    sink.end(object);
                }
                Some(remaining) => {
                    *remaining -= 1;
                    break;
                }
                None => break,
            }
        }
        if open.is_empty() {
            break;
        }
        items += 1;
        if items.is_multiple_of(INTERRUPT_CHECK_PERIOD) {
            (reader.check)();
        }
        header = reader.pull()?;
    }
    match bytes.len() - reader.position {
        0 => Ok(()),
        trailing => Err(invalid(format!("{trailing} bytes follow the CBOR item"))),
    }
}

/// The CBOR bytes, read in place: strings are handed out without a copy.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Of the next header.
    position: usize,
    /// Called now and then in loops whose length the data decides: a check for a cancel.
    check: fn(),
}

impl<'a> Reader<'a> {
    fn consume(&mut self, length: usize) -> Result<&'a [u8], JsonError> {
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| invalid("truncated CBOR: it ends inside an item"))?;
        let consumed = &self.bytes[self.position..end];
        self.position = end;
        Ok(consumed)
    }

    /// The next header (RFC 8949 §3): a major type in the top 3 bits of the first byte, and in
    /// the low 5 bits the argument, or that 1, 2, 4 or 8 bytes of it follow, or indefinite.
    fn pull(&mut self) -> Result<Header, JsonError> {
        let at = self.position;
        let initial = self.consume(1)?[0];
        let (major, low_bits) = (initial >> 5, initial & 0x1f);
        let malformed = || invalid(format!("not well-formed CBOR at byte {at}"));
        let argument = match low_bits {
            0..=23 => u64::from(low_bits),
            24..=27 => {
                let bytes = self.consume(1 << (low_bits - 24))?;
                bytes.iter().fold(0, |argument, byte| argument << 8 | u64::from(*byte))
            }
            31 => {
                return match major {
                    2 => Ok(Header::Bytes(None)),
                    3 => Ok(Header::Text(None)),
                    4 => Ok(Header::Array(None)),
                    5 => Ok(Header::Map(None)),
                    7 => Ok(Header::Break),
                    _ => Err(malformed()),
                }
            }
            _ => return Err(malformed()),
        };
        let length = || usize::try_from(argument).map_err(|_| malformed());
        Ok(match major {
            0 => Header::Positive(argument),
            1 => Header::Negative(argument),
            2 => Header::Bytes(Some(length()?)),
            3 => Header::Text(Some(length()?)),
            4 => Header::Array(Some(length()?)),
            5 => Header::Map(Some(length()?)),
            6 => Header::Tag(argument),
            _ => match low_bits {
                25 => Header::Float(half_to_double(argument as u16)),
                26 => Header::Float(f64::from(f32::from_bits(argument as u32))),
                27 => Header::Float(f64::from_bits(argument)),
                _ => Header::Simple(argument as u8),
            },
        })
    }

    /// The contents of a text or byte string whose header was `Text(length)` or `Bytes(length)`:
    /// in place, or the segments joined when the length is indefinite.
    fn string(&mut self, length: Option<usize>, text: bool) -> Result<Cow<'a, [u8]>, JsonError> {
        if let Some(length) = length {
            return self.consume(length).map(Cow::Borrowed);
        }
        let mut joined = Vec::new();
        loop {
            match self.pull()? {
                Header::Break => return Ok(Cow::Owned(joined)),
                Header::Text(Some(length)) if text => joined.extend_from_slice(self.consume(length)?),
                Header::Bytes(Some(length)) if !text => joined.extend_from_slice(self.consume(length)?),
                _ => return Err(invalid("not well-formed CBOR: a segment of another kind in a string")),
            }
        }
    }

    fn text(&mut self, length: Option<usize>) -> Result<Cow<'a, str>, JsonError> {
        let not_utf8 = |_| invalid("not well-formed CBOR: text that is not UTF-8");
        let text = match self.string(length, true)? {
            Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).map_err(not_utf8)?),
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error()))?),
        };
        if text.contains('\0') {
            return Err(invalid("a string holds U+0000, which jsonb cannot store"));
        }
        Ok(text)
    }

    fn scalar(&mut self, header: Header) -> Result<Scalar<'a>, JsonError> {
        Ok(match header {
            Header::Simple(simple::NULL) => Scalar::Null,
            Header::Simple(simple::FALSE) => Scalar::Bool(false),
            Header::Simple(simple::TRUE) => Scalar::Bool(true),
            Header::Simple(simple::UNDEFINED) => return Err(invalid("undefined")),
            Header::Simple(other) => return Err(invalid(format!("the CBOR simple value {other}"))),
            Header::Text(length) => Scalar::String(self.text(length)?),
            Header::Float(float) if float.is_finite() => Scalar::Number(Number::Text(format!("{float}"))),
            Header::Float(float) => return Err(invalid(format!("JSON has no number {float}"))),
            Header::Bytes(_) => return Err(invalid("a byte string")),
            Header::Tag(DECIMAL_FRACTION) => Scalar::Number(self.decimal_fraction()?),
            Header::Tag(tag @ (POSITIVE_BIGNUM | NEGATIVE_BIGNUM)) => {
                Scalar::Number(self.bignum(tag)?.into_number())
            }
            Header::Tag(tag) => return Err(invalid(format!("CBOR tag {tag}"))),
            _ => match integer(header) {
                Some(integer) => Scalar::Number(integer.into_number()),
                None => return Err(invalid("not well-formed CBOR: an unexpected header")),
            },
        })
    }

    /// The integer of a bignum whose tag was read.
    fn bignum(&mut self, tag: u64) -> Result<Integer, JsonError> {
        let integer = self.bignum_digits(tag)?;
        match &integer {
            Integer::Big { digits, .. } if digits.len() > MAX_WHOLE_DIGITS => Err(invalid(format!(
                "an integer of {} digits; numeric holds at most {MAX_WHOLE_DIGITS} before the point",
                digits.len()
            ))),
            _ => Ok(integer),
        }
    }

    /// [`Reader::bignum`] before the check of numeric's range (a decimal fraction's mantissa may
    /// have more digits, the exponent placing some after the point).
    fn bignum_digits(&mut self, tag: u64) -> Result<Integer, JsonError> {
        let Header::Bytes(length) = self.pull()? else {
            return Err(invalid("a bignum that is not a byte string"));
        };
        let bytes = self.string(length, false)?;
        let significant = bytes.len() - bytes.iter().take_while(|b| **b == 0).count();
        if significant > MAX_BIGNUM_BYTES {
            return Err(invalid(format!(
                "a bignum of {significant} bytes; numeric holds at most {} digits, {MAX_BIGNUM_BYTES} bytes",
                MAX_WHOLE_DIGITS + MAX_FRACTION_DIGITS
            )));
        }
        Ok(if tag == NEGATIVE_BIGNUM {
            Integer::Big { negative: true, digits: bytes_to_decimal(&add_one(&bytes), self.check) }
        } else {
            Integer::Big { negative: false, digits: bytes_to_decimal(&bytes, self.check) }
        })
    }

    /// `[exponent, mantissa]` of a decimal fraction whose tag was read: the mantissa's digits
    /// with the point placed by the exponent, as many digits after it as the exponent says.
    fn decimal_fraction(&mut self) -> Result<Number, JsonError> {
        let length = match self.pull()? {
            Header::Array(length @ (Some(2) | None)) => length,
            Header::Array(_) => return Err(invalid("a decimal fraction that is not [exponent, mantissa]")),
            _ => return Err(invalid("a decimal fraction that is not an array")),
        };
        let exponent = match integer(self.pull()?) {
            Some(Integer::Small(exponent)) if (MIN_EXPONENT..=MAX_EXPONENT).contains(&exponent) => exponent,
            Some(_) => return Err(invalid("a decimal fraction's exponent beyond what numeric holds")),
            None => return Err(invalid("a decimal fraction that is not [exponent, mantissa]")),
        };
        let mantissa = match self.pull()? {
            Header::Tag(tag @ (POSITIVE_BIGNUM | NEGATIVE_BIGNUM)) => self.bignum_digits(tag)?,
            header => integer(header)
                .ok_or_else(|| invalid("a decimal fraction's mantissa that is not an integer"))?,
        };
        if length.is_none() && self.pull()? != Header::Break {
            return Err(invalid("a decimal fraction that is not [exponent, mantissa]"));
        }
        let digits = match &mantissa {
            Integer::Small(mantissa) => mantissa.unsigned_abs().to_string().len(),
            Integer::Big { digits, .. } => digits.len(),
        };
        // Digits before the point: the mantissa's, moved by the exponent.
        if digits as i64 + exponent > MAX_WHOLE_DIGITS as i64 {
            return Err(invalid(format!(
                "a decimal fraction of {} digits before the point; numeric holds at most {MAX_WHOLE_DIGITS}",
                digits as i64 + exponent
            )));
        }
        Ok(match mantissa {
            Integer::Small(mantissa) if exponent <= 0 => {
                Number::Decimal { mantissa, scale: (-exponent) as u32 }
            }
            Integer::Small(mantissa) => Number::Text(format!("{mantissa}{}", "0".repeat(exponent as usize))),
            Integer::Big { negative, digits } if exponent <= 0 => {
                Number::Text(decimal_text(negative, &digits, (-exponent) as usize))
            }
            Integer::Big { negative, digits } => {
                Number::Text(decimal_text(negative, &format!("{digits}{}", "0".repeat(exponent as usize)), 0))
            }
        })
    }
}

/// A half-precision float (RFC 8949 Appendix D).
fn half_to_double(half: u16) -> f64 {
    half::f16::from_bits(half).to_f64()
}

/// An integer read from CBOR.
enum Integer {
    Small(i64),
    Big { negative: bool, digits: String },
}

impl Integer {
    fn into_number(self) -> Number {
        match self {
            Integer::Small(n) => Number::Integer(n),
            Integer::Big { negative, digits } => Number::Text(decimal_text(negative, &digits, 0)),
        }
    }
}

/// The integer of a CBOR integer header.
fn integer(header: Header) -> Option<Integer> {
    Some(match header {
        Header::Positive(n) => match i64::try_from(n) {
            Ok(n) => Integer::Small(n),
            Err(_) => Integer::Big { negative: false, digits: n.to_string() },
        },
        // -1 - n
        Header::Negative(n) => match i64::try_from(n) {
            Ok(n) => Integer::Small(-1 - n),
            Err(_) => Integer::Big { negative: true, digits: (u128::from(n) + 1).to_string() },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    /// Compact JSON text of what the decoder reads.
    #[derive(Default)]
    struct JsonText {
        out: String,
        /// Per open container: whether an item was written in it.
        written: Vec<bool>,
    }

    impl JsonText {
        fn separate(&mut self) {
            if let Some(written) = self.written.last_mut() {
                if *written {
                    self.out.push(',');
                }
                *written = true;
            }
        }

        fn string(&mut self, text: &str) {
            self.out.push('"');
            for c in text.chars() {
                match c {
                    '"' => self.out.push_str("\\\""),
                    '\\' => self.out.push_str("\\\\"),
                    '\n' => self.out.push_str("\\n"),
                    c if (c as u32) < 0x20 => write!(self.out, "\\u{:04x}", c as u32).unwrap(),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
    }

    impl<'a> Sink<'a> for JsonText {
        fn begin(&mut self, object: bool) {
            self.separate();
            self.out.push(if object { '{' } else { '[' });
            self.written.push(false);
        }
        fn end(&mut self, object: bool) {
            self.written.pop();
            self.out.push(if object { '}' } else { ']' });
        }
        fn key(&mut self, key: Cow<'a, str>) {
            self.separate();
            self.string(&key);
            self.out.push(':');
            // The value follows the key without a comma.
            *self.written.last_mut().unwrap() = false;
        }
        fn scalar(&mut self, scalar: Scalar<'a>) {
            self.separate();
            match scalar {
                Scalar::Null => self.out.push_str("null"),
                Scalar::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
                Scalar::String(text) => self.string(&text),
                Scalar::Number(number) => self.out.push_str(&number.text()),
            }
            if let Some(written) = self.written.last_mut() {
                *written = true;
            }
        }
    }

    fn to_text(bytes: &[u8]) -> Result<String, JsonError> {
        let mut sink = JsonText::default();
        decode(bytes, &mut sink)?;
        Ok(sink.out)
    }

    fn number_bytes(text: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_number_text(&mut bytes, text, || {});
        bytes
    }

    fn cbor(value: Value) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn numbers_keep_their_digits() {
        for text in [
            "0",
            "1",
            "-1",
            "1.000",
            "0.1",
            "-0.001",
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "12345678901234567890.123456789012345678901",
            "1.5",
            "-0.25",
            "1.50",
            "0.0000001",
            "0.00000095367431640625",
        ] {
            assert_eq!(to_text(&number_bytes(text)).unwrap(), text);
        }
        let huge = format!("1{}", "0".repeat(400));
        assert_eq!(to_text(&number_bytes(&huge)).unwrap(), huge);
    }

    #[test]
    fn numbers_take_the_smallest_form() {
        assert_eq!(number_bytes("42"), cbor(Value::Integer(42.into())));
        assert_eq!(number_bytes("-9223372036854775808"), cbor(Value::Integer(i64::MIN.into())));
        assert_eq!(number_bytes("1.5"), cbor(Value::Float(1.5)));
        assert_eq!(number_bytes("-12.25"), cbor(Value::Float(-12.25)));
        let fraction = |exponent: i64, mantissa: i64| {
            cbor(Value::Tag(
                DECIMAL_FRACTION,
                Box::new(Value::Array(vec![
                    Value::Integer(exponent.into()),
                    Value::Integer(mantissa.into()),
                ])),
            ))
        };
        assert_eq!(number_bytes("1.50"), fraction(-2, 150));
        assert_eq!(number_bytes("0.1"), fraction(-1, 1));
        assert_eq!(number_bytes("0.0"), fraction(-1, 0));
        assert!(matches!(
            ciborium::from_reader(number_bytes("99999999999999999999").as_slice()).unwrap(),
            Value::Tag(POSITIVE_BIGNUM, _)
        ));
    }

    #[test]
    fn headers_match_ciborium() {
        for n in [0, 23, 24, 255, 256, 65_535, 65_536, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX]
        {
            for header in [Header::Positive(n), Header::Negative(n), Header::Tag(n)] {
                let mut ours = Vec::new();
                push(&mut ours, header);
                let mut theirs = Vec::new();
                Encoder::from(&mut theirs).push(header).unwrap();
                assert_eq!(ours, theirs, "{header:?}");
            }
        }
    }

    #[test]
    fn decimal_fractions_become_decimals() {
        let read = |exponent: Value, mantissa: Value| {
            let mut sink = Vec::new();
            let bytes = cbor(Value::Tag(DECIMAL_FRACTION, Box::new(Value::Array(vec![exponent, mantissa]))));
            let mut reader_sink = Collect(&mut sink);
            decode(&bytes, &mut reader_sink).map(|()| sink)
        };
        assert_eq!(
            read(Value::Integer((-2).into()), Value::Integer(27315.into())),
            Ok(vec![Number::Decimal { mantissa: 27315, scale: 2 }])
        );
        assert_eq!(
            read(Value::Integer(2.into()), Value::Integer((-5).into())),
            Ok(vec![Number::Text("-500".into())])
        );
        assert!(read(Value::Integer((-20_000).into()), Value::Integer(1.into())).is_err());
        assert!(read(Value::Integer(0.into()), Value::Float(1.5)).is_err());
    }

    #[test]
    fn bignum_digits_round_trip() {
        let nothing = || {};
        for digits in ["0", "1", "255", "256", "4294967295", "4294967296", "18446744073709551616"] {
            let bytes = decimal_to_bytes(digits, nothing);
            assert_eq!(bytes_to_decimal(&bytes, nothing), digits);
        }
        // 1 followed by 2,000 zeros, and 2,001 nines.
        for digits in [format!("1{}", "0".repeat(2000)), "9".repeat(2001)] {
            let bytes = decimal_to_bytes(&digits, nothing);
            assert_eq!(bytes_to_decimal(&bytes, nothing), digits);
        }
        assert_eq!(decimal_to_bytes("65536", nothing), vec![1, 0, 0]);
        assert_eq!(bytes_to_decimal(&[0, 0, 1, 0], nothing), "256");
    }

    #[test]
    fn refuses_numbers_numeric_cannot_hold() {
        let bignum = |bytes: usize| {
            let mut item = vec![0xc2, 0x5a];
            item.extend_from_slice(&(bytes as u32).to_be_bytes());
            item.extend(std::iter::repeat_n(0xff, bytes));
            item
        };
        // 256 KiB: refused from its length, before any digit is worked out.
        let error = to_text(&bignum(256 * 1024)).expect_err("too long");
        assert!(format!("{error:?}").contains("262144 bytes"), "{error:?}");
        // Just past numeric's 131,072 digits before the point.
        assert!(to_text(&bignum(54_500)).is_err());
        // Within it: read.
        assert_eq!(to_text(&bignum(1000)).map(|text| text.len()), Ok(2409));
        // A decimal fraction whose exponent puts it past the digits before the point.
        let fraction = |exponent: i64, mantissa: Value| {
            cbor(Value::Tag(
                DECIMAL_FRACTION,
                Box::new(Value::Array(vec![Value::Integer(exponent.into()), mantissa])),
            ))
        };
        assert!(to_text(&fraction(131_072, Value::Integer(10.into()))).is_err());
        assert!(to_text(&fraction(131_071, Value::Integer(1.into()))).is_ok());
    }

    /// The numbers read, for the cases above.
    struct Collect<'v>(&'v mut Vec<Number>);

    impl<'a> Sink<'a> for Collect<'_> {
        fn begin(&mut self, _: bool) {}
        fn end(&mut self, _: bool) {}
        fn key(&mut self, _: Cow<'a, str>) {}
        fn scalar(&mut self, scalar: Scalar<'a>) {
            if let Scalar::Number(number) = scalar {
                self.0.push(number);
            }
        }
    }

    #[test]
    fn refuses_what_json_cannot_express() {
        assert!(to_text(&cbor(Value::Bytes(vec![1]))).is_err());
        assert!(to_text(&cbor(Value::Float(f64::NAN))).is_err());
        assert!(to_text(&cbor(Value::Map(vec![(Value::Integer(1.into()), Value::Null)]))).is_err());
        assert!(to_text(&cbor(Value::Tag(1, Box::new(Value::Integer(0.into()))))).is_err());
        assert!(to_text(&[0xf7]).is_err(), "undefined");
        assert!(to_text(&[0x82, 0x63, b'a', b'b', b'c', 0xf7]).is_err(), "undefined after a text");
        assert_eq!(to_text(&[0x82, 0x62, 0xc3, 0xb7, 0xf6]).as_deref(), Ok("[\"÷\",null]"));
        assert!(to_text(&[0x01, 0x02]).is_err(), "trailing bytes");
        assert!(to_text(&[0xff]).is_err(), "a break alone");
        assert!(to_text(&[0x9f, 0x01, 0xff, 0xff]).is_err(), "a break after the item");
        assert!(to_text(&[0xbf, 0x61, b'a', 0xff]).is_err(), "a break in place of a value");
        assert!(to_text(&[0x61, 0xff]).is_err(), "text that is not UTF-8");
        assert!(to_text(&[0x82, 0x01]).is_err(), "truncated");
        assert!(to_text(&[0x62, b'a']).is_err(), "truncated text");
        assert!(to_text(&[]).is_err(), "empty");
    }

    #[test]
    fn reads_indefinite_lengths_and_segments() {
        // [_ 1, {_ "ab" (in two segments): true}]
        let bytes = [0x9f, 0x01, 0xbf, 0x7f, 0x61, b'a', 0x61, b'b', 0xff, 0xf5, 0xff, 0xff];
        assert_eq!(to_text(&bytes).as_deref(), Ok("[1,{\"ab\":true}]"));
        assert_eq!(to_text(&[0xd9, 0xd9, 0xf7, 0x80]).as_deref(), Ok("[]"), "self-described");
        assert!(to_text(&[0x81, 0xd9, 0xd9, 0xf7, 0x80]).is_err(), "self-described inside");
    }

    #[test]
    fn floats_of_every_width() {
        assert_eq!(to_text(&[0xf9, 0x3e, 0x00]).as_deref(), Ok("1.5"));
        assert_eq!(to_text(&[0xf9, 0xc4, 0x00]).as_deref(), Ok("-4"));
        assert_eq!(to_text(&[0xf9, 0x00, 0x01]).as_deref(), Ok(format!("{}", 2f64.powi(-24)).as_str()));
        assert_eq!(to_text(&[0xf9, 0x7b, 0xff]).as_deref(), Ok("65504"));
        assert_eq!(to_text(&[0xfa, 0x47, 0xc3, 0x50, 0x00]).as_deref(), Ok("100000"));
        assert_eq!(to_text(&cbor(Value::Float(1.1))).as_deref(), Ok("1.1"));
        assert!(to_text(&[0xf9, 0x7c, 0x00]).is_err(), "infinity");
        assert!(to_text(&[0xf9, 0xfc, 0x00]).is_err(), "minus infinity");
        assert!(to_text(&[0xfa, 0x7f, 0xc0, 0x00, 0x00]).is_err(), "NaN");
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| [vec![0x81u8; depth], vec![0x00]].concat();
        assert!(to_text(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(to_text(&nested(MAX_DEPTH + 1)), Err(JsonError::TooDeep));
        assert_eq!(to_text(&nested(100_000)), Err(JsonError::TooDeep));
    }

    #[test]
    fn strings_are_read_whole() {
        let bytes = cbor(Value::Text("a\"b\\c\n\u{1}é😀".into()));
        assert_eq!(to_text(&bytes).unwrap(), "\"a\\\"b\\\\c\\n\\u0001é😀\"");
        assert!(to_text(&cbor(Value::Text("a\0b".into()))).is_err(), "U+0000");
    }
}
