//! The data set the compatibility tests back up: several databases; the sample ingest
//! data; a document holding every BSON type; unicode, dotted and `$`-prefixed field
//! names; documents near the 16 MiB limit; capped, validated and collated collections;
//! a view; unique, compound, TTL, partial, sparse, collation-specific and 2dsphere
//! indexes (SecantusDB has no text or hashed indexes); and collection names that
//! mongodump must escape or shorten.

use bson::spec::BinarySubtype;
use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

use ingest_backup::sample::{self, SampleSpec};

/// Database holding the every-type and index fixtures.
pub const KITCHEN: &str = "kitchen";
/// A collection whose escaped name is longer than 238 bytes (mongodump shortens it).
pub fn long_escaped_name() -> String {
    "/".repeat(90)
}

/// One document holding every BSON type a server stores.
pub fn every_type_document() -> Document {
    let decimal: Decimal128 = "1234.5678".parse().unwrap();
    doc! {
        "_id": "every-type",
        "double": 3.25,
        "string": "text",
        "document": { "nested": { "deeper": [1, 2, 3] } },
        "array": [1, "two", { "three": 3.0 }, [4]],
        "binary_generic": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 255] },
        "binary_function": Binary { subtype: BinarySubtype::Function, bytes: b"fn".to_vec() },
        "binary_old": Binary { subtype: BinarySubtype::BinaryOld, bytes: b"old".to_vec() },
        "binary_uuid_old": Binary { subtype: BinarySubtype::UuidOld, bytes: vec![7; 16] },
        "binary_uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![9; 16] },
        "binary_md5": Binary { subtype: BinarySubtype::Md5, bytes: vec![5; 16] },
        "binary_user": Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: b"custom".to_vec() },
        "object_id": ObjectId::parse_str("5ac4b6e0c5a0b4a3f0b0c0d0").unwrap(),
        "bool": true,
        "date": DateTime::from_millis(1_522_841_820_000),
        "date_before_epoch": DateTime::from_millis(-86_400_000),
        "null": Bson::Null,
        "regex": Regex { pattern: "^ingest.*$".into(), options: "imx".into() },
        "javascript": Bson::JavaScriptCode("function () { return 1; }".into()),
        "javascript_with_scope": Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope { code: "function () { return x; }".into(), scope: doc! { "x": 1 } }),
        "int32": 42_i32,
        "timestamp": Timestamp { time: 1_522_841_820, increment: 7 },
        "int64": 9_007_199_254_740_993_i64,
        "decimal128": decimal,
        "min_key": Bson::MinKey,
        "max_key": Bson::MaxKey,
        "unicode_ключ_鍵": "värde — 値 — 🚀",
        "dotted.field.name": "allowed since MongoDB 5.0",
        "$dollar_prefixed": "allowed since MongoDB 5.0",
    }
}

async fn command(client: &Client, database: &str, command: Document) {
    client.database(database).run_command(command.clone()).await.unwrap_or_else(|e| panic!("{command}: {e}"));
}

/// Loads the whole data set into `client`'s server.
pub async fn load(client: &Client, sample_megabytes: u64) {
    let spec = SampleSpec { database: "ingest".into(), target_bytes: sample_megabytes << 20, seed: 11 };
    sample::load(client, &spec).await.unwrap();

    let kitchen = client.database(KITCHEN);
    let types = kitchen.collection::<Document>("types");
    types.insert_one(every_type_document()).await.unwrap();
    types.insert_many((0..50).map(|i| doc! { "_id": i, "n": i, "nested": { "level": { "i": i } }, "tags": ["a", "b"] })).await.unwrap();

    // Documents near the 16 MiB limit (the server's maxBsonObjectSize is 16 MiB).
    let big = kitchen.collection::<Document>("big");
    for (i, size) in [(1, 16 * 1024 * 1024 - 1024), (2, 15 * 1024 * 1024)] {
        big.insert_one(doc! { "_id": i, "payload": Binary { subtype: BinarySubtype::Generic, bytes: vec![i as u8; size] } }).await.unwrap();
    }

    command(client, KITCHEN, doc! { "create": "capped_log", "capped": true, "size": 1_048_576_i64, "max": 100_i64 }).await;
    let capped = kitchen.collection::<Document>("capped_log");
    for i in 0..150 {
        capped.insert_one(doc! { "_id": i, "line": format!("log line {i}") }).await.unwrap();
    }
    command(
        client,
        KITCHEN,
        doc! {
            "create": "validated",
            "validator": { "$jsonSchema": { "bsonType": "object", "required": ["name"], "properties": { "name": { "bsonType": "string" } } } },
            "validationLevel": "moderate",
            "validationAction": "error",
        },
    )
    .await;
    kitchen.collection::<Document>("validated").insert_one(doc! { "_id": 1, "name": "valid" }).await.unwrap();
    command(client, KITCHEN, doc! { "create": "collated", "collation": { "locale": "fr", "strength": 2 } }).await;
    kitchen.collection::<Document>("collated").insert_one(doc! { "_id": 1, "name": "élan" }).await.unwrap();
    command(client, KITCHEN, doc! { "create": "recent_types", "viewOn": "types", "pipeline": [{ "$match": { "n": { "$gte": 25 } } }] }).await;

    let indexed = kitchen.collection::<Document>("indexed");
    indexed
        .insert_many((0..20).map(|i| {
            doc! {
                "_id": i, "email": format!("u{i}@example.org"), "a": i % 3, "b": i, "created": DateTime::from_millis(1_522_841_820_000 + i),
                "score": i, "nickname": if i % 2 == 0 { Bson::String(format!("n{i}")) } else { Bson::Null }, "name": format!("Name{i}"),
                "location": { "type": "Point", "coordinates": [-0.1 + i as f64 / 100.0, 51.5] },
            }
        }))
        .await
        .unwrap();
    let indexes = [
        IndexModel::builder().keys(doc! { "email": 1 }).options(IndexOptions::builder().unique(true).build()).build(),
        IndexModel::builder().keys(doc! { "a": 1, "b": -1 }).build(),
        IndexModel::builder()
            .keys(doc! { "created": 1 })
            .options(IndexOptions::builder().expire_after(std::time::Duration::from_secs(86_400 * 365 * 100)).build())
            .build(),
        IndexModel::builder()
            .keys(doc! { "score": 1 })
            .options(IndexOptions::builder().partial_filter_expression(doc! { "score": { "$gt": 5 } }).build())
            .build(),
        IndexModel::builder().keys(doc! { "nickname": 1 }).options(IndexOptions::builder().sparse(true).build()).build(),
        IndexModel::builder()
            .keys(doc! { "name": 1 })
            .options(
                IndexOptions::builder()
                    .name("name_en_ci".to_string())
                    .collation(mongodb::options::Collation::builder().locale("en").strength(mongodb::options::CollationStrength::Primary).build())
                    .build(),
            )
            .build(),
        IndexModel::builder().keys(doc! { "location": "2dsphere" }).build(),
    ];
    indexed.create_indexes(indexes).await.unwrap();

    kitchen.collection::<Document>("with space/and slash").insert_one(doc! { "_id": 1 }).await.unwrap();
    kitchen.collection::<Document>(&long_escaped_name()).insert_one(doc! { "_id": 1, "why": "escaped name over 238 bytes" }).await.unwrap();
    kitchen.collection::<Document>("empty_but_indexed").create_index(IndexModel::builder().keys(doc! { "k": 1 }).build()).await.unwrap();
    kitchen
        .collection::<Document>("system.js")
        .insert_one(doc! { "_id": "helper", "value": Bson::JavaScriptCode("function () {}".into()) })
        .await
        .unwrap();

    let other = client.database("archive_2018");
    other.collection::<Document>("submissions").insert_many((0..10).map(|i| doc! { "_id": i, "state": "Complete" })).await.unwrap();
}
