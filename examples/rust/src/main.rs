//! pg_cache from Rust with tokio-postgres: a read-through cache, bytes, JSON and CBOR, and removal.
//! PG_CACHE_URL selects the database (default: the cluster `make run` starts).
//! Exits non-zero on any unexpected result.

use ciborium::value::Value;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

type Error = Box<dyn std::error::Error>;

fn expect(condition: bool, what: &str) -> Result<(), Error> {
    if condition {
        Ok(())
    } else {
        Err(format!("unexpected: {what}").into())
    }
}

async fn get(client: &Client, key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(client.query_one("SELECT cache_get($1)", &[&key]).await?.get(0))
}

/// `ttl` and `sliding` are intervals such as "10 minutes".
async fn set(client: &Client, key: &str, value: &[u8], ttl: Option<&str>, sliding: Option<&str>) -> Result<(), Error> {
    client
        .execute("SELECT cache_set($1, $2, ttl => $3::text::interval, sliding => $4::text::interval)", &[&key, &value, &ttl, &sliding])
        .await?;
    Ok(())
}

async fn remove(client: &Client, key: &str) -> Result<bool, Error> {
    Ok(client.query_one("SELECT cache_remove($1)", &[&key]).await?.get(0))
}

/// The cached value of `key`, or `loader`'s, stored for next time; and whether it was a hit.
async fn get_or_set<F, Fut>(client: &Client, key: &str, loader: F, ttl: Option<&str>, sliding: Option<&str>) -> Result<(Vec<u8>, bool), Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    if let Some(cached) = get(client, key).await? {
        return Ok((cached, true));
    }
    let value = loader().await;
    set(client, key, &value, ttl, sliding).await?;
    Ok((value, false))
}

async fn slow_query() -> Vec<u8> {
    tokio::time::sleep(Duration::from_millis(300)).await; // stands in for an expensive query
    b"monthly report: 42 orders".to_vec()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let url = std::env::var("PG_CACHE_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5499/pg_cache".into());
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    remove(&client, "example:rust:report").await?;

    // 1. read-through: a miss runs the loader, the next read is a hit
    for expected_hit in [false, true] {
        let started = Instant::now();
        let (value, hit) = get_or_set(&client, "example:rust:report", slow_query, Some("10 minutes"), Some("2 minutes")).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!("{} {ms:7.1} ms  {}", if hit { "hit " } else { "miss" }, String::from_utf8_lossy(&value));
        expect(value == b"monthly report: 42 orders", "read-through value")?;
        expect(hit == expected_hit, "hit or miss")?;
    }

    // 2. bytes round-trip exactly; JSON travels as UTF-8 bytes
    let blob: Vec<u8> = (0..=255).collect();
    set(&client, "example:rust:blob", &blob, Some("1 minute"), None).await?;
    let stored = get(&client, "example:rust:blob").await?;
    expect(stored.as_deref() == Some(&blob[..]), "binary value round trip")?;
    println!("bytes: {} bytes back, identical", blob.len());

    let json = r#"{"user":42,"roles":["admin","dev"],"name":"Zoë"}"#;
    set(&client, "example:rust:json", json.as_bytes(), None, Some("5 minutes")).await?;
    let back = get(&client, "example:rust:json").await?.unwrap_or_default();
    expect(back == json.as_bytes(), "JSON round trip")?;
    println!("json: {}", String::from_utf8_lossy(&back));

    // 3. jsonb values are stored as CBOR: ciborium reads the bytes, and CBOR written here reads
    //    back as jsonb
    client
        .execute("SELECT cache_set_json($1, $2::text::jsonb, ttl => '1 minute')", &[&"example:rust:doc", &json])
        .await?;
    let stored = get(&client, "example:rust:doc").await?.unwrap_or_default();
    // Plain CBOR (pg_cache 0.2.0 wrapped it in the self-described tag 55799).
    let document = match ciborium::from_reader::<Value, _>(&stored[..])? {
        Value::Tag(55799, inner) => *inner,
        plain => plain,
    };
    let user = document.as_map().and_then(|entries| {
        entries.iter().find(|(key, _)| key.as_text() == Some("user")).map(|(_, value)| value.clone())
    });
    expect(user == Some(Value::Integer(42.into())), "ciborium decodes what cache_set_json stored")?;
    let written = Value::Map(vec![
        (Value::Text("written".into()), Value::Text("by rust".into())),
        (Value::Text("n".into()), Value::Array(vec![Value::Integer(1.into()), Value::Float(2.5), Value::Null, Value::Bool(true)])),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&written, &mut bytes)?;
    set(&client, "example:rust:cbor", &bytes, Some("1 minute"), None).await?;
    let as_json: String = client.query_one("SELECT cache_get_json($1)::text", &[&"example:rust:cbor"]).await?.get(0);
    expect(as_json == r#"{"n": [1, 2.5, null, true], "written": "by rust"}"#, "cache_get_json reads a map ciborium wrote")?;
    println!("cbor: {} bytes stored for {} bytes of JSON; read back {as_json}", stored.len(), json.len());

    // 4. remove, then a miss
    let removed = remove(&client, "example:rust:report").await?;
    expect(removed && get(&client, "example:rust:report").await?.is_none(), "remove then miss")?;
    println!("removed: the next read is a miss");
    println!("rust example: ok");
    Ok(())
}
