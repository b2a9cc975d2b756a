//! jsonb values stored as CBOR (RFC 8949), losslessly.
//!
//! Encoding walks the jsonb with PostgreSQL's own iterator, so numbers reach us as the exact
//! decimal text of their `numeric` (never through a double):
//! - an integer that fits 64 bits is a CBOR integer; a larger one a bignum (tags 2 and 3);
//! - a number with a fraction that a double holds exactly and prints back as the same text
//!   (`12.25`, `0.5`) a float, the smallest of half, single and double precision that holds it;
//! - any other number a decimal fraction (tag 4): `[exponent, mantissa]`, the mantissa an integer
//!   or a bignum, the exponent minus the count of digits after the point, so `1.000` is
//!   `[-3, 1000]` and reads back as `1.000`, and `0.1` (no double is exactly 0.1) is `[-1, 1]`;
//! - strings, arrays, objects (keys in jsonb's order), booleans and null as themselves;
//! - the whole wrapped in the self-described CBOR tag 55799.
//!
//! Decoding accepts that, and any single CBOR item JSON can express, tagged 55799 or not:
//! floats (finite), integers, bignums, decimal fractions, text, arrays, maps with text keys,
//! booleans, null. Anything else (byte strings, other tags, undefined, NaN, non-text keys,
//! trailing bytes, more than one item) is refused with the reason, and so is nesting deeper than
//! [`MAX_DEPTH`].

use ciborium::value::{Integer, Value};
use pgrx::pg_sys;
use pgrx::FromDatum;
use std::fmt::Write;

/// Arrays and objects nested deeper than this are refused, on set and on get: the walk and the
/// decoder recurse, and a bound keeps them far from the stack's end.
pub const MAX_DEPTH: usize = 256;

/// The self-described CBOR tag (RFC 8949 §3.4.6).
const SELF_DESCRIBED: u64 = 55799;
const POSITIVE_BIGNUM: u64 = 2;
const NEGATIVE_BIGNUM: u64 = 3;
const DECIMAL_FRACTION: u64 = 4;

/// Exponents of decimal fractions read back: beyond them the text would pass what `numeric`
/// holds (131,072 digits before the point, 16,383 after).
const MAX_EXPONENT: i64 = 131_072;
const MIN_EXPONENT: i64 = -16_383;

/// Why a value cannot be stored or read as JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not one well-formed CBOR item, or one JSON cannot express; says which.
    Invalid(String),
}

/// The CBOR encoding of the jsonb `value`, tagged 55799.
///
/// # Safety
/// `value` is a jsonb datum.
pub unsafe fn encode(value: pg_sys::Datum) -> Result<Vec<u8>, JsonError> {
    let jsonb = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let mut iterator = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
    let mut token = pg_sys::JsonbValue { type_: 0, val: std::mem::zeroed() };
    let first = pg_sys::JsonbIteratorNext(&mut iterator, &mut token, false);
    let item = read_container(&mut iterator, first, &token, 0)?;
    // A scalar is stored as a one-element "raw scalar" array.
    let item = match item {
        Walked::RawScalar(scalar) => scalar,
        Walked::Value(value) => value,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&Value::Tag(SELF_DESCRIBED, Box::new(item)), &mut bytes)
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    Ok(bytes)
}

enum Walked {
    Value(Value),
    RawScalar(Value),
}

/// Reads the container that `start` (a begin token) opens, up to its end token.
unsafe fn read_container(
    iterator: &mut *mut pg_sys::JsonbIterator,
    start: pg_sys::JsonbIteratorToken::Type,
    opening: &pg_sys::JsonbValue,
    depth: usize,
) -> Result<Walked, JsonError> {
    use pg_sys::JsonbIteratorToken::*;
    let raw_scalar = start == WJB_BEGIN_ARRAY && opening.val.array.rawScalar;
    if !raw_scalar && depth >= MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    let mut elements = Vec::new();
    let mut entries = Vec::new();
    let mut key = None;
    let mut token = pg_sys::JsonbValue { type_: 0, val: std::mem::zeroed() };
    loop {
        match pg_sys::JsonbIteratorNext(iterator, &mut token, false) {
            WJB_KEY => key = Some(scalar(&token)?),
            WJB_VALUE => entries.push((key.take().expect("a key before its value"), scalar(&token)?)),
            WJB_ELEM => elements.push(scalar(&token)?),
            nested @ (WJB_BEGIN_ARRAY | WJB_BEGIN_OBJECT) => {
                let Walked::Value(value) = read_container(iterator, nested, &token, depth + 1)? else {
                    unreachable!("only the top level is a raw scalar")
                };
                match key.take() {
                    Some(key) => entries.push((key, value)),
                    None => elements.push(value),
                }
            }
            WJB_END_ARRAY if raw_scalar => {
                return Ok(Walked::RawScalar(elements.pop().expect("a raw scalar holds one value")))
            }
            WJB_END_ARRAY => return Ok(Walked::Value(Value::Array(elements))),
            WJB_END_OBJECT => return Ok(Walked::Value(Value::Map(entries))),
            other => return Err(JsonError::Invalid(format!("unexpected jsonb token {other}"))),
        }
    }
}

unsafe fn scalar(value: &pg_sys::JsonbValue) -> Result<Value, JsonError> {
    use pg_sys::jbvType;
    Ok(match value.type_ {
        jbvType::jbvNull => Value::Null,
        jbvType::jbvBool => Value::Bool(value.val.boolean),
        jbvType::jbvString => {
            let bytes =
                std::slice::from_raw_parts(value.val.string.val as *const u8, value.val.string.len as usize);
            Value::Text(String::from_utf8(bytes.to_vec()).map_err(|e| JsonError::Invalid(e.to_string()))?)
        }
        jbvType::jbvNumeric => {
            let numeric = pgrx::AnyNumeric::from_datum(pg_sys::Datum::from(value.val.numeric), false)
                .expect("a jsonb number is a numeric");
            number(&numeric.to_string())
        }
        other => return Err(JsonError::Invalid(format!("unexpected jsonb value type {other}"))),
    })
}

/// The CBOR item of a number given as `numeric`'s output: `-?digits(.digits)?`.
fn number(text: &str) -> Value {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{whole}{fraction}");
    let mantissa = integer(negative, &digits);
    if fraction.is_empty() {
        mantissa
    } else if let Some(float) = exact_float(text, &digits, fraction.len()) {
        Value::Float(float)
    } else {
        let exponent = -(fraction.len() as i64);
        Value::Tag(DECIMAL_FRACTION, Box::new(Value::Array(vec![Value::Integer(exponent.into()), mantissa])))
    }
}

/// The double of a decimal `text` (`digits` without the point, `scale` of them after it) when
/// it is exactly that number and prints back as exactly that text (`12.25`, not `0.1` or `1.50`).
fn exact_float(text: &str, digits: &str, scale: usize) -> Option<f64> {
    // digits / 10^scale is a binary fraction exactly when 5^scale divides digits.
    let digits: u64 = digits.parse().ok().filter(|d| *d < 1 << 53)?;
    let five_to_scale = 5u64.checked_pow(u32::try_from(scale).ok()?)?;
    let float: f64 = text.parse().ok()?;
    (digits.is_multiple_of(five_to_scale) && format!("{float}") == text).then_some(float)
}

/// An integer given by its decimal digits: a CBOR integer when it fits 64 bits, else a bignum.
fn integer(negative: bool, digits: &str) -> Value {
    let parsed = digits.parse::<i128>().ok().map(|n| if negative { -n } else { n });
    if let Some(n) = parsed.filter(|n| i64::try_from(*n).is_ok()) {
        return Value::Integer(Integer::from(n as i64));
    }
    let magnitude = decimal_to_bytes(digits);
    if negative {
        // A negative bignum n stands for -1 - n.
        Value::Tag(NEGATIVE_BIGNUM, Box::new(Value::Bytes(subtract_one(magnitude))))
    } else {
        Value::Tag(POSITIVE_BIGNUM, Box::new(Value::Bytes(magnitude)))
    }
}

/// Big-endian bytes of a non-negative decimal number, without leading zero bytes.
fn decimal_to_bytes(digits: &str) -> Vec<u8> {
    // Little-endian base-256 limbs, multiplied by 10 and added to digit by digit.
    let mut limbs: Vec<u8> = Vec::new();
    for digit in digits.bytes().map(|b| b - b'0') {
        let mut carry = u32::from(digit);
        for limb in &mut limbs {
            let value = u32::from(*limb) * 10 + carry;
            *limb = value as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            limbs.push(carry as u8);
            carry >>= 8;
        }
    }
    limbs.reverse();
    limbs
}

/// The decimal digits of big-endian `bytes`.
fn bytes_to_decimal(bytes: &[u8]) -> String {
    // Repeated division by 10^9 of the big-endian number.
    let mut number: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut chunks = Vec::new();
    while !number.is_empty() {
        let mut remainder = 0u64;
        for byte in &mut number {
            let value = (remainder << 8) | u64::from(*byte);
            *byte = (value / 1_000_000_000) as u8;
            remainder = value % 1_000_000_000;
        }
        chunks.push(remainder);
        let leading = number.iter().take_while(|b| **b == 0).count();
        number.drain(..leading);
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

/// JSON text of the single CBOR item `bytes` holds.
pub fn decode(bytes: &[u8]) -> Result<String, JsonError> {
    let mut reader = bytes;
    // The decoder's own bound, a little above ours: tags count as levels there.
    let item: Value =
        ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH + 4).map_err(|error| {
            match error {
                ciborium::de::Error::RecursionLimitExceeded => JsonError::TooDeep,
                ciborium::de::Error::Io(_) => invalid("truncated CBOR: it ends inside an item"),
                ciborium::de::Error::Syntax(offset) => {
                    invalid(format!("not well-formed CBOR at byte {offset}"))
                }
                ciborium::de::Error::Semantic(_, message) => {
                    invalid(format!("not well-formed CBOR: {message}"))
                }
            }
        })?;
    if !reader.is_empty() {
        return Err(invalid(format!("{} bytes follow the CBOR item", reader.len())));
    }
    refuse_undefined(&bytes[..bytes.len() - reader.len()])?;
    let item = match item {
        Value::Tag(SELF_DESCRIBED, inner) => *inner,
        other => other,
    };
    let mut json = String::with_capacity(bytes.len() * 2);
    write_json(&item, 0, &mut json)?;
    Ok(json)
}

/// The decoder reads `undefined` as null; JSON has no undefined, so look for it in the
/// (well-formed) item's headers, skipping the contents of strings.
fn refuse_undefined(item: &[u8]) -> Result<(), JsonError> {
    use ciborium_ll::{simple, Decoder, Header};
    let mut decoder = Decoder::from(item);
    while decoder.offset() < item.len() {
        match decoder.pull().map_err(|_| invalid("not well-formed CBOR"))? {
            Header::Simple(simple::UNDEFINED) => return Err(invalid("undefined")),
            Header::Simple(simple::FALSE | simple::TRUE | simple::NULL) => {}
            Header::Simple(other) => return Err(invalid(format!("the CBOR simple value {other}"))),
            Header::Bytes(Some(length)) | Header::Text(Some(length)) => {
                let mut skipped = vec![0u8; length];
                ciborium_io::Read::read_exact(&mut decoder, &mut skipped)
                    .map_err(|_| invalid("truncated CBOR: it ends inside an item"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(what: impl Into<String>) -> JsonError {
    JsonError::Invalid(what.into())
}

fn write_json(item: &Value, depth: usize, out: &mut String) -> Result<(), JsonError> {
    match item {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(n) => write!(out, "{}", i128::from(*n)).expect("writing to a String"),
        Value::Float(f) if f.is_finite() => write!(out, "{f}").expect("writing to a String"),
        Value::Float(f) => return Err(invalid(format!("JSON has no number {f}"))),
        Value::Text(text) => write_string(text, out)?,
        Value::Array(_) | Value::Map(_) if depth >= MAX_DEPTH => return Err(JsonError::TooDeep),
        Value::Array(elements) => {
            out.push('[');
            for (i, element) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(element, depth + 1, out)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                let Value::Text(key) = key else {
                    return Err(invalid("a map key that is not text"));
                };
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out)?;
                out.push(':');
                write_json(value, depth + 1, out)?;
            }
            out.push('}');
        }
        Value::Tag(POSITIVE_BIGNUM | NEGATIVE_BIGNUM, _) => out.push_str(&bignum(item)?),
        Value::Tag(DECIMAL_FRACTION, inner) => out.push_str(&decimal_fraction(inner)?),
        Value::Tag(tag, _) => return Err(invalid(format!("CBOR tag {tag}"))),
        Value::Bytes(_) => return Err(invalid("a byte string")),
        _ => return Err(invalid("a CBOR simple value (undefined)")),
    }
    Ok(())
}

/// The decimal text of an integer or a bignum.
fn bignum(item: &Value) -> Result<String, JsonError> {
    match item {
        Value::Integer(n) => Ok(i128::from(*n).to_string()),
        Value::Tag(POSITIVE_BIGNUM, inner) => match inner.as_ref() {
            Value::Bytes(bytes) => Ok(bytes_to_decimal(bytes)),
            _ => Err(invalid("a bignum that is not a byte string")),
        },
        Value::Tag(NEGATIVE_BIGNUM, inner) => match inner.as_ref() {
            Value::Bytes(bytes) => Ok(format!("-{}", bytes_to_decimal(&add_one(bytes)))),
            _ => Err(invalid("a bignum that is not a byte string")),
        },
        _ => Err(invalid("a decimal fraction's mantissa that is not an integer")),
    }
}

/// The decimal text of `[exponent, mantissa]`: the mantissa's digits with the point placed by
/// the exponent, as many digits after it as the exponent says.
fn decimal_fraction(inner: &Value) -> Result<String, JsonError> {
    let Value::Array(parts) = inner else {
        return Err(invalid("a decimal fraction that is not an array"));
    };
    let [Value::Integer(exponent), mantissa] = parts.as_slice() else {
        return Err(invalid("a decimal fraction that is not [exponent, mantissa]"));
    };
    let exponent = i64::try_from(*exponent)
        .ok()
        .filter(|e| (MIN_EXPONENT..=MAX_EXPONENT).contains(e))
        .ok_or_else(|| invalid("a decimal fraction's exponent beyond what numeric holds"))?;
    let mantissa = bignum(mantissa)?;
    let (sign, digits) = match mantissa.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", mantissa.as_str()),
    };
    if exponent >= 0 {
        return Ok(format!("{sign}{digits}{}", "0".repeat(exponent as usize)));
    }
    let scale = (-exponent) as usize;
    let padded = format!("{}{digits}", "0".repeat((scale + 1).saturating_sub(digits.len())));
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    Ok(format!("{sign}{whole}.{fraction}"))
}

fn write_string(text: &str, out: &mut String) -> Result<(), JsonError> {
    if text.contains('\0') {
        return Err(invalid("a string holds U+0000, which jsonb cannot store"));
    }
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("writing to a String"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    fn round_trip_number(text: &str) -> String {
        let mut bytes = Vec::new();
        ciborium::into_writer(&number(text), &mut bytes).unwrap();
        decode(&bytes).unwrap()
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
        ] {
            assert_eq!(round_trip_number(text), text);
        }
        let huge = format!("1{}", "0".repeat(400));
        assert_eq!(round_trip_number(&huge), huge);
    }

    #[test]
    fn integers_that_fit_are_cbor_integers() {
        assert_eq!(number("42"), Value::Integer(42.into()));
        assert_eq!(number("1.5"), Value::Float(1.5));
        assert_eq!(number("-12.25"), Value::Float(-12.25));
        assert!(matches!(number("1.50"), Value::Tag(DECIMAL_FRACTION, _)));
        assert!(matches!(number("0.1"), Value::Tag(DECIMAL_FRACTION, _)));
        assert!(matches!(number("99999999999999999999"), Value::Tag(POSITIVE_BIGNUM, _)));
    }

    #[test]
    fn refuses_what_json_cannot_express() {
        let encode = |value: Value| {
            let mut bytes = Vec::new();
            ciborium::into_writer(&value, &mut bytes).unwrap();
            bytes
        };
        assert!(decode(&encode(Value::Bytes(vec![1]))).is_err());
        assert!(decode(&encode(Value::Float(f64::NAN))).is_err());
        assert!(decode(&encode(Value::Map(vec![(Value::Integer(1.into()), Value::Null)]))).is_err());
        assert!(decode(&encode(Value::Tag(1, Box::new(Value::Integer(0.into()))))).is_err());
        assert!(decode(&[0xf7]).is_err(), "undefined");
        assert!(decode(&[0x82, 0x63, b'a', b'b', b'c', 0xf7]).is_err(), "undefined after a text");
        // "÷" is c3 b7: read as headers, a tag and a map; skipped as the text it is.
        assert_eq!(decode(&[0x82, 0x62, 0xc3, 0xb7, 0xf6]).as_deref(), Ok("[\"÷\",null]"));
        assert!(decode(&[0x01, 0x02]).is_err(), "trailing bytes");
        assert!(decode(&[0xff]).is_err(), "not well-formed");
        assert!(decode(&[]).is_err(), "empty");
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| [vec![0x81u8; depth], vec![0x00]].concat();
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(decode(&nested(MAX_DEPTH + 1)), Err(JsonError::TooDeep));
        assert_eq!(decode(&nested(100_000)), Err(JsonError::TooDeep));
    }

    #[test]
    fn strings_are_escaped() {
        let mut bytes = Vec::new();
        ciborium::into_writer(&Value::Text("a\"b\\c\n\u{1}é😀".into()), &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), "\"a\\\"b\\\\c\\n\\u0001é😀\"");
    }
}
