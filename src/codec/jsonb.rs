//! jsonb ⇄ CBOR through PostgreSQL: encoding walks a jsonb with PostgreSQL's iterator, reading
//! numbers from `numeric`'s stored digits; decoding feeds the CBOR reader's items to PostgreSQL's
//! jsonb builder. The CBOR itself is `codec::cbor`.

use super::cbor::*;
use ciborium_ll::{simple, Header};
use pgrx::pg_sys;
use std::borrow::Cow;

/// The CBOR encoding of the jsonb `value`, untagged (0.3.0): cbor2 6 and other decoders turn what
/// the self-described tag wraps into immutable containers.
///
/// # Safety
/// `value` is a jsonb datum.
pub unsafe fn encode(value: pg_sys::Datum) -> Result<Vec<u8>, JsonError> {
    // SAFETY: `value` is a jsonb datum (the caller's contract): it is detoasted and walked with PostgreSQL's
    // iterator, whose tokens point into it while it lives.
    unsafe {
        use pg_sys::JsonbIteratorToken::*;
        let jsonb = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        // The CBOR of a document is about the size of its jsonb: mostly a single allocation.
        let mut out = Vec::with_capacity(pgrx::varlena::varsize_any(jsonb.cast()));
        let mut iterator = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
        let mut token = pg_sys::JsonbValue { type_: 0, val: std::mem::zeroed() };
        let mut depth = 0;
        for step in 0usize.. {
            if step % INTERRUPT_CHECK_PERIOD == 0 {
                pgrx::check_for_interrupts!();
            }
            match pg_sys::JsonbIteratorNext(&mut iterator, &mut token, false) {
                // A scalar is stored as a one-element "raw scalar" array: written as the scalar alone.
                WJB_BEGIN_ARRAY if token.val.array.rawScalar => {}
                WJB_END_ARRAY if depth == 0 => {}
                WJB_BEGIN_ARRAY | WJB_BEGIN_OBJECT if depth >= MAX_DEPTH => return Err(JsonError::TooDeep),
                WJB_BEGIN_ARRAY => {
                    depth += 1;
                    push(&mut out, Header::Array(Some(token.val.array.nElems as usize)));
                }
                WJB_BEGIN_OBJECT => {
                    depth += 1;
                    push(&mut out, Header::Map(Some(token.val.object.nPairs as usize)));
                }
                WJB_END_ARRAY | WJB_END_OBJECT => depth -= 1,
                WJB_KEY | WJB_VALUE | WJB_ELEM => write_scalar(&mut out, &token)?,
                WJB_DONE => return Ok(out),
                other => return Err(invalid(format!("unexpected jsonb token {other}"))),
            }
        }
        unreachable!("the jsonb iterator ends with WJB_DONE")
    }
}

unsafe fn write_scalar(out: &mut Vec<u8>, value: &pg_sys::JsonbValue) -> Result<(), JsonError> {
    // SAFETY: `value` is a scalar token of the jsonb iterator: the union member read is the one its `type_`
    // names, and a string's bytes lie within the jsonb.
    unsafe {
        use pg_sys::jbvType;
        match value.type_ {
            jbvType::jbvNull => push(out, Header::Simple(simple::NULL)),
            jbvType::jbvBool => {
                push(out, Header::Simple(if value.val.boolean { simple::TRUE } else { simple::FALSE }))
            }
            jbvType::jbvString => {
                let bytes = std::slice::from_raw_parts(
                    value.val.string.val as *const u8,
                    value.val.string.len as usize,
                );
                std::str::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
                push(out, Header::Text(Some(bytes.len())));
                out.extend_from_slice(bytes);
            }
            jbvType::jbvNumeric => match stored_decimal(value.val.numeric) {
                Some((mantissa, scale)) => write_decimal(out, mantissa, scale),
                None => {
                    let numeric = pg_sys::Datum::from(value.val.numeric);
                    let text = <pgrx::AnyNumeric as pgrx::FromDatum>::from_datum(numeric, false)
                        .expect("a jsonb number is a numeric")
                        .to_string();
                    write_number_text(out, &text, check_interrupts);
                }
            },
            other => return Err(invalid(format!("unexpected jsonb value type {other}"))),
        }
        Ok(())
    }
}

/// `numeric` as `(mantissa, scale)`, the number being `mantissa × 10^-scale` with `scale` its
/// display scale, when the mantissa fits 64 bits; else (or for NaN and infinities) None.
///
/// Reads the stored form, which is the on-disk format and so the same in every version
/// (numeric.c): after the varlena header a 16-bit word; its top two bits 10 mark the short form
/// (sign bit 0x2000, display scale in bits 7-12, a 7-bit signed weight in bits 0-6), 00 and 01 a
/// positive and a negative number in the long form (display scale in the low 14 bits, then a
/// 16-bit weight), 11 NaN and infinities. Base-10000 digits follow, most significant first, the
/// first of weight `weight`; leading and trailing zero digits are not stored.
unsafe fn stored_decimal(numeric: pg_sys::Numeric) -> Option<(i64, u32)> {
    // SAFETY: `numeric` is a detoasted numeric of a jsonb value: its varlena header gives its length, and
    // only bytes within it are read.
    unsafe {
        let varlena = numeric.cast::<pg_sys::varlena>();
        let stored = std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(varlena).cast::<u8>(),
            pgrx::varlena::varsize_any_exhdr(varlena),
        );
        let word = |at: usize| stored.get(at..at + 2).map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]));
        let header = word(0)?;
        let (negative, scale, weight, digits) = match header & 0xC000 {
            0x8000 => {
                let weight = (header & 0x3F) as i64 - if header & 0x40 != 0 { 64 } else { 0 };
                (header & 0x2000 != 0, u32::from((header & 0x1F80) >> 7), weight, &stored[2..])
            }
            sign @ (0x0000 | 0x4000) => {
                (sign == 0x4000, u32::from(header & 0x3FFF), word(2)? as i16 as i64, &stored[4..])
            }
            _ => return None,
        };
        let mut magnitude: i64 = 0;
        for digit in digits.chunks_exact(2) {
            let digit = i16::from_ne_bytes([digit[0], digit[1]]);
            magnitude = magnitude.checked_mul(10_000)?.checked_add(i64::from(digit))?;
        }
        if magnitude != 0 {
            // magnitude is the number × 10^places.
            let places = 4 * (digits.len() as i64 / 2 - 1 - weight);
            let shift = i64::from(scale) - places;
            let power = 10i64.checked_pow(u32::try_from(shift.abs()).ok()?)?;
            magnitude = if shift >= 0 {
                magnitude.checked_mul(power)?
            } else {
                (magnitude % power == 0).then_some(magnitude / power)?
            };
        }
        Some((if negative { -magnitude } else { magnitude }, scale))
    }
}

/// Checks for a cancel or a timeout, in a backend.
fn check_interrupts() {
    pgrx::check_for_interrupts!();
}

/// The jsonb of the single CBOR item `bytes` holds, built with PostgreSQL's jsonb builder (as
/// `jsonb_in` does after parsing text).
///
/// # Safety
/// In a backend, in the memory context the jsonb is to live in.
pub unsafe fn decode_jsonb(bytes: &[u8]) -> Result<pg_sys::Datum, JsonError> {
    // SAFETY: in a backend, in the memory context the jsonb is to live in (the caller's contract); the
    // builder's strings point into `bytes`, which outlive the building.
    unsafe {
        let mut builder = JsonbBuilder { state: std::ptr::null_mut(), built: std::ptr::null_mut() };
        decode(bytes, &mut builder)?;
        Ok(pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(builder.built)))
    }
}

/// Feeds `pushJsonbValue`. Its strings point into the CBOR bytes, which outlive the building.
struct JsonbBuilder {
    state: *mut pg_sys::JsonbParseState,
    /// The value the last push completed: the whole document once the decoder is done.
    built: *mut pg_sys::JsonbValue,
}

impl JsonbBuilder {
    fn push(&mut self, token: pg_sys::JsonbIteratorToken::Type, value: *mut pg_sys::JsonbValue) {
        // SAFETY: `self.state` is the builder's own parse state (null before the first push), `value` a valid
        // JsonbValue or null as pushJsonbValue expects.
        self.built = unsafe { pg_sys::pushJsonbValue(&mut self.state, token, value) };
    }
}

impl<'a> Sink<'a> for JsonbBuilder {
    fn check_interrupts() {
        check_interrupts();
    }

    fn begin(&mut self, object: bool) {
        use pg_sys::JsonbIteratorToken::*;
        self.push(if object { WJB_BEGIN_OBJECT } else { WJB_BEGIN_ARRAY }, std::ptr::null_mut());
    }

    fn end(&mut self, object: bool) {
        use pg_sys::JsonbIteratorToken::*;
        self.push(if object { WJB_END_OBJECT } else { WJB_END_ARRAY }, std::ptr::null_mut());
    }

    fn key(&mut self, key: Cow<'a, str>) {
        let mut key = string_value(key);
        self.push(pg_sys::JsonbIteratorToken::WJB_KEY, &mut key);
    }

    fn scalar(&mut self, scalar: Scalar<'a>) {
        use pg_sys::JsonbIteratorToken::*;
        let mut value = match scalar {
            Scalar::Null => jsonb_value(pg_sys::jbvType::jbvNull),
            Scalar::Bool(boolean) => {
                let mut value = jsonb_value(pg_sys::jbvType::jbvBool);
                value.val.boolean = boolean;
                value
            }
            Scalar::String(text) => string_value(text),
            Scalar::Number(number) => {
                let mut value = jsonb_value(pg_sys::jbvType::jbvNumeric);
                // SAFETY: in the builder's memory context, where the jsonb is to live.
                value.val.numeric = unsafe { numeric(&number) };
                value
            }
        };
        if self.state.is_null() {
            // A scalar alone is stored as a one-element "raw scalar" array.
            let mut array = jsonb_value(pg_sys::jbvType::jbvArray);
            array.val.array.rawScalar = true;
            array.val.array.nElems = 1;
            self.push(WJB_BEGIN_ARRAY, &mut array);
            self.push(WJB_ELEM, &mut value);
            self.push(WJB_END_ARRAY, std::ptr::null_mut());
        } else {
            // SAFETY: `self.state` is not null here: a key or value is pushed only inside an open container.
            let in_object = unsafe { (*self.state).contVal.type_ } == pg_sys::jbvType::jbvObject;
            self.push(if in_object { WJB_VALUE } else { WJB_ELEM }, &mut value);
        }
    }
}

fn jsonb_value(type_: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    // SAFETY: an all-zero JsonbValue union is a valid (empty) value of every member.
    pg_sys::JsonbValue { type_, val: unsafe { std::mem::zeroed() } }
}

fn string_value(text: Cow<'_, str>) -> pg_sys::JsonbValue {
    let length = text.len();
    let pointer = match text {
        Cow::Borrowed(text) => text.as_ptr(),
        // Joined from segments: copied to where the jsonb is built, to outlive the decoder.
        // SAFETY: the string is leaked into a palloc'd copy that lives as long as the jsonb being built.
        Cow::Owned(text) => unsafe {
            let copy = pg_sys::palloc(text.len().max(1)).cast::<u8>();
            copy.copy_from_nonoverlapping(text.as_ptr(), text.len());
            copy.cast_const()
        },
    };
    let mut value = jsonb_value(pg_sys::jbvType::jbvString);
    value.val.string.val = pointer.cast_mut().cast();
    value.val.string.len = length as i32;
    value
}

/// The numeric of a number: built from its integer parts where PostgreSQL has a constructor for
/// them, else through `numeric_in`, as `jsonb_in` builds it.
unsafe fn numeric(number: &Number) -> pg_sys::Numeric {
    // SAFETY: builds the numeric with PostgreSQL's constructors in the current memory context; `numeric_in`
    // gets a NUL-terminated string that outlives the call.
    unsafe {
        match *number {
            Number::Integer(n) => pg_sys::int64_to_numeric(n),
            // It multiplies the mantissa by up to 1000, and some minor releases mishandle an
            // overflow there.
            Number::Decimal { mantissa, scale } if mantissa.unsigned_abs() <= (i64::MAX / 1000) as u64 => {
                pg_sys::int64_div_fast_to_numeric(mantissa, scale as i32)
            }
            _ => {
                let text = std::ffi::CString::new(number.text()).expect("a number's text has no NUL");
                pg_sys::DirectFunctionCall3Coll(
                    Some(numeric_in),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(text.as_ptr()),
                    pg_sys::Datum::from(pg_sys::InvalidOid),
                    pg_sys::Datum::from(-1i32),
                )
                .cast_mut_ptr()
            }
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn numeric_in(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: `fcinfo` is set up by `DirectFunctionCall3Coll` with numeric_in's three arguments.
    unsafe { pg_sys::numeric_in(fcinfo) }
}
