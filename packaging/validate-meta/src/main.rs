//! `validate-meta [META.json]`: validates a PGXN distribution metadata file with `pgxn_meta`
//! (v1 and v2 schemas, picked by the file's `meta-spec.version`). Prints what it found and exits
//! non-zero when the file does not validate.
use std::{env, fs, process::ExitCode};

use pgxn_meta::valid::Validator;
use serde_json::Value;

fn main() -> ExitCode {
    let path = env::args().nth(1).unwrap_or_else(|| "META.json".to_string());
    let meta: Value = match fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(meta) => meta,
        Err(e) => {
            eprintln!("{path}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = meta
        .pointer("/meta-spec/version")
        .and_then(Value::as_str)
        .unwrap_or("(none)")
        .to_string();
    match Validator::new().validate(&meta) {
        Ok(_) => {
            println!(
                "{path}: valid PGXN metadata (meta-spec {spec}, pgxn_meta {}), {} {}",
                "0.7.0",
                meta["name"].as_str().unwrap_or("?"),
                meta["version"].as_str().unwrap_or("?"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: not valid PGXN metadata (meta-spec {spec}): {e}");
            ExitCode::FAILURE
        }
    }
}
