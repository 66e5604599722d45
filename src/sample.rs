//! The sample data set: a deterministic generator of documents shaped like an ingest
//! platform's metadata store (projects, biomaterials, files, processes, protocols,
//! submission envelopes), with nested metadata, UUIDs, DBRefs, dates and a few large
//! documents. The demo, the tests and the benchmarks all use it; its size is a
//! parameter.
//!
//! [`Compat::FerretDb`] generates the same data set in a form FerretDB v1 stores: it
//! refuses field names starting with `$`, so references are `{ref, id}` documents
//! instead of DBRefs (`{$ref, $id}`) and the index on them is `submissionEnvelope.id`.
//! (The set holds no Decimal128, which FerretDB v1 also lacks.)

use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// The collections of the sample data set, in generation order.
pub const COLLECTIONS: [&str; 6] = ["submissionEnvelope", "project", "protocol", "biomaterial", "process", "file"];

/// Relative number of documents generated per collection (same order as [`COLLECTIONS`]).
const WEIGHTS: [u32; 6] = [1, 1, 3, 30, 20, 45];

/// One large document (about 1.5 MiB) is generated for every this many bytes.
const LARGE_DOCUMENT_EVERY: u64 = 16 << 20;

/// Which server the generated documents must be accepted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compat {
    /// MongoDB and SecantusDB: references are DBRefs (`{$ref, $id}`).
    #[default]
    #[value(name = "mongodb")]
    MongoDb,
    /// FerretDB v1, which refuses `$`-prefixed field names: references are `{ref, id}`.
    #[value(name = "ferretdb")]
    FerretDb,
}

impl Compat {
    /// The field names of a reference to another document: collection, then id.
    fn reference_fields(self) -> (&'static str, &'static str) {
        match self {
            Compat::MongoDb => ("$ref", "$id"),
            Compat::FerretDb => ("ref", "id"),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// Database to load into.
    pub database: String,
    /// Approximate total BSON bytes.
    pub target_bytes: u64,
    /// Seed of the generator: the same seed gives the same documents.
    pub seed: u64,
}

impl SampleSpec {
    /// `target_mb` MiB into the database `ingest`, seed 42.
    pub fn megabytes(target_mb: u64) -> Self {
        Self { database: "ingest".into(), target_bytes: target_mb << 20, seed: 42 }
    }
}

/// Generates `(collection, document)` pairs until the target size is reached.
pub struct SampleGenerator {
    rng: StdRng,
    target_bytes: u64,
    produced_bytes: u64,
    next_large_at: u64,
    sequence: u64,
    base_time_ms: i64,
    recent: [Vec<ObjectId>; 6],
    compat: Compat,
    /// References generated since the last document was counted.
    references: u64,
}

impl SampleGenerator {
    /// A generator for `spec`, for MongoDB ([`Compat::MongoDb`]).
    pub fn new(spec: &SampleSpec) -> Self {
        Self::for_server(spec, Compat::MongoDb)
    }

    /// A generator for `spec` whose documents `compat` accepts. The same seed gives
    /// the same documents for every `compat` but for the names of reference fields.
    pub fn for_server(spec: &SampleSpec, compat: Compat) -> Self {
        Self {
            rng: StdRng::seed_from_u64(spec.seed),
            target_bytes: spec.target_bytes,
            produced_bytes: 0,
            next_large_at: LARGE_DOCUMENT_EVERY / 2,
            sequence: 0,
            base_time_ms: 1_522_841_820_000,
            recent: Default::default(),
            compat,
            references: 0,
        }
    }

    fn pick_collection(&mut self) -> usize {
        let total: u32 = WEIGHTS.iter().sum();
        let mut roll = self.rng.random_range(0..total);
        for (index, weight) in WEIGHTS.iter().enumerate() {
            if roll < *weight {
                return index;
            }
            roll -= weight;
        }
        WEIGHTS.len() - 1
    }

    fn oid(&mut self) -> ObjectId {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&((self.base_time_ms / 1000) as u32 + self.sequence as u32).to_be_bytes());
        self.rng.fill(&mut bytes[4..]);
        ObjectId::from_bytes(bytes)
    }

    fn uuid(&mut self) -> Bson {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Bson::Binary(Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: bytes.to_vec() })
    }

    fn date(&mut self) -> DateTime {
        DateTime::from_millis(self.base_time_ms + self.sequence as i64 * 1_000 + self.rng.random_range(0..1_000))
    }

    fn words(&mut self, count: usize) -> String {
        const WORDS: [&str; 16] = [
            "cell",
            "tissue",
            "single",
            "atlas",
            "human",
            "donor",
            "liver",
            "sequencing",
            "library",
            "protocol",
            "immune",
            "lung",
            "organoid",
            "spatial",
            "assay",
            "profiling",
        ];
        (0..count).map(|_| WORDS[self.rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
    }

    fn reference(&mut self, collection: usize) -> Bson {
        let pool = &self.recent[collection];
        let id = if pool.is_empty() { ObjectId::from_bytes([0; 12]) } else { pool[self.rng.random_range(0..pool.len())] };
        self.references += 1;
        let (collection_field, id_field) = self.compat.reference_fields();
        Bson::Document(doc! { collection_field: COLLECTIONS[collection], id_field: id })
    }

    fn common(&mut self, id: ObjectId, schema_type: &str) -> Document {
        let submitted = self.date();
        doc! {
            "_id": id,
            "uuid": { "uuid": self.uuid() },
            "submissionDate": submitted,
            "updateDate": submitted,
            "validationState": if self.rng.random_bool(0.9) { "Valid" } else { "Invalid" },
            "isUpdate": false,
            "dcpVersion": submitted,
            "type": schema_type,
            "schemaVersion": format!("{}.{}.0", self.rng.random_range(1..20), self.rng.random_range(0..9)),
        }
    }

    fn document(&mut self, collection: usize) -> Document {
        let id = self.oid();
        let name = COLLECTIONS[collection];
        let mut document = self.common(id, name);
        let envelope = self.reference(0);
        let project = self.reference(1);
        let content = match name {
            "submissionEnvelope" => {
                let state = ["Draft", "Valid", "Submitted", "Complete"][self.rng.random_range(0..4)];
                document.insert("submissionState", state);
                document.insert(
                    "stagingDetails",
                    doc! { "stagingAreaUuid": { "uuid": self.uuid() }, "stagingAreaLocation": { "value": format!("s3://staging/{}", id.to_hex()) } },
                );
                doc! { "submitter": self.words(2), "notes": self.words(12) }
            }
            "project" => doc! {
                "schema_type": "project",
                "project_core": { "project_short_name": self.words(3), "project_title": self.words(10), "project_description": self.words(120) },
                "contributors": (0..self.rng.random_range(1..6)).map(|i| Bson::Document(doc! { "name": format!("Contributor,{i},{}", self.words(1)), "email": format!("c{i}@example.org"), "institution": self.words(4), "corresponding_contributor": i == 0 })).collect::<Vec<_>>(),
                "funders": [{ "grant_id": format!("G{}", self.rng.random_range(1000..9999)), "organization": self.words(3) }],
            },
            "protocol" => doc! {
                "schema_type": "protocol",
                "protocol_core": { "protocol_id": format!("protocol_{}", self.sequence), "protocol_name": self.words(5), "protocol_description": self.words(40) },
                "method": { "text": self.words(3), "ontology": format!("EFO:{:07}", self.rng.random_range(0..9_999_999)) },
            },
            "biomaterial" => doc! {
                "schema_type": "biomaterial",
                "biomaterial_core": { "biomaterial_id": format!("specimen_{}", self.sequence), "ncbi_taxon_id": [9606], "biomaterial_description": self.words(15) },
                "organ": { "text": self.words(1), "ontology": format!("UBERON:{:07}", self.rng.random_range(0..9_999_999)) },
                "genus_species": [{ "text": "Homo sapiens", "ontology": "NCBITaxon:9606" }],
                "age": self.rng.random_range(0.0..90.0),
                "is_living": self.rng.random_bool(0.5),
            },
            "process" => doc! {
                "schema_type": "process",
                "process_core": { "process_id": format!("process_{}", self.sequence) },
                "inputBiomaterials": [self.reference(3), self.reference(3)],
                "protocols": [self.reference(2)],
                "length_of_time": self.rng.random_range(1i32..3600),
            },
            _ => {
                let size = self.rng.random_range(1_000i64..50_000_000_000);
                document.insert("fileName", format!("{}_R{}.fastq.gz", id.to_hex(), self.rng.random_range(1..3)));
                document.insert("cloudUrl", format!("s3://ingest-data/{}", id.to_hex()));
                document.insert("size", size);
                document.insert(
                    "checksums",
                    doc! { "sha256": hex::encode(self.rng.random::<[u8; 32]>()), "crc32c": format!("{:08x}", self.rng.random::<u32>()) },
                );
                let read_index = ["read1", "read2", "index1"][self.rng.random_range(0..3)];
                doc! {
                    "schema_type": "file",
                    "file_core": { "file_name": format!("{}.fastq.gz", id.to_hex()), "format": "fastq.gz", "content_description": [{ "text": "DNA sequence" }] },
                    "read_index": read_index,
                    "lane_index": self.rng.random_range(1i32..8),
                }
            }
        };
        document.insert("content", content);
        document.insert("submissionEnvelope", envelope);
        document.insert("project", project);
        if self.produced_bytes >= self.next_large_at {
            self.next_large_at += LARGE_DOCUMENT_EVERY;
            let lines: Vec<Bson> = (0..6_000).map(|_| Bson::String(self.words(30))).collect();
            document.insert("validationErrors", lines);
        }
        let pool = &mut self.recent[collection];
        if pool.len() < 256 {
            pool.push(id);
        } else {
            let slot = self.rng.random_range(0..256);
            self.recent[collection][slot] = id;
        }
        document
    }
}

impl Iterator for SampleGenerator {
    type Item = (&'static str, Document);

    fn next(&mut self) -> Option<Self::Item> {
        if self.produced_bytes >= self.target_bytes {
            return None;
        }
        let collection = if self.sequence < COLLECTIONS.len() as u64 { self.sequence as usize } else { self.pick_collection() };
        let document = self.document(collection);
        self.sequence += 1;
        // Counted at the DBRef size ("$ref" and "$id" are one byte longer each than
        // "ref" and "id"), so every compat variant stops and grows at the same points.
        let renamed_bytes = if self.compat == Compat::MongoDb { 0 } else { 2 * self.references };
        self.references = 0;
        self.produced_bytes += bson::to_vec(&document).map(|b| b.len() as u64).unwrap_or(0) + renamed_bytes;
        Some((COLLECTIONS[collection], document))
    }
}

/// What [`load`] inserted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadSummary {
    /// Documents inserted.
    pub documents: u64,
    /// Approximate BSON bytes inserted.
    pub bytes: u64,
}

/// Inserts the sample data set into `spec.database`, with the indexes an ingest
/// platform keeps (unique `uuid.uuid`, references, dates).
///
/// # Errors
/// A MongoDB error naming the collection.
pub async fn load(client: &Client, spec: &SampleSpec) -> Result<LoadSummary> {
    load_for(client, spec, Compat::MongoDb).await
}

/// [`load`] with documents and indexes `compat` accepts.
///
/// # Errors
/// A MongoDB error naming the collection.
pub async fn load_for(client: &Client, spec: &SampleSpec, compat: Compat) -> Result<LoadSummary> {
    let database = client.database(&spec.database);
    let mut batches: [Vec<Document>; 6] = Default::default();
    let mut summary = LoadSummary::default();
    let (_, id_field) = compat.reference_fields();
    for (name, document) in SampleGenerator::for_server(spec, compat) {
        summary.documents += 1;
        summary.bytes += bson::to_vec(&document).map(|b| b.len() as u64).unwrap_or(0);
        let index = COLLECTIONS.iter().position(|c| *c == name).expect("generated from COLLECTIONS");
        batches[index].push(document);
        if batches[index].len() >= 1_000 {
            let batch = std::mem::take(&mut batches[index]);
            insert(&database, name, batch).await?;
        }
    }
    for (index, batch) in batches.into_iter().enumerate() {
        if !batch.is_empty() {
            insert(&database, COLLECTIONS[index], batch).await?;
        }
    }
    for name in COLLECTIONS {
        let collection = database.collection::<Document>(name);
        let indexes = [
            IndexModel::builder().keys(doc! { "uuid.uuid": 1 }).options(IndexOptions::builder().unique(true).build()).build(),
            IndexModel::builder().keys(doc! { format!("submissionEnvelope.{id_field}"): 1 }).build(),
            IndexModel::builder().keys(doc! { "updateDate": -1 }).build(),
        ];
        collection.create_indexes(indexes).await.map_err(Error::mongo(format!("indexing {}.{name}", spec.database)))?;
    }
    Ok(summary)
}

async fn insert(database: &mongodb::Database, name: &str, batch: Vec<Document>) -> Result<()> {
    database
        .collection::<Document>(name)
        .insert_many(batch)
        .ordered(false)
        .await
        .map_err(Error::mongo(format!("inserting sample documents into {}.{name}", database.name())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_reaches_its_size() {
        let spec = SampleSpec { database: "ingest".into(), target_bytes: 40 << 20, seed: 7 };
        let first: Vec<_> = SampleGenerator::new(&spec).take(50).collect();
        let again: Vec<_> = SampleGenerator::new(&spec).take(50).collect();
        assert_eq!(first, again);
        let mut bytes = 0u64;
        let mut large = 0;
        let mut seen = std::collections::BTreeSet::new();
        for (collection, document) in SampleGenerator::new(&spec) {
            let size = bson::to_vec(&document).unwrap().len() as u64;
            bytes += size;
            large += usize::from(size > 1 << 20);
            seen.insert(collection);
        }
        assert!(bytes >= spec.target_bytes && bytes < spec.target_bytes + (2 << 20), "{bytes}");
        assert!(large >= 2, "a few large documents, got {large}");
        assert_eq!(seen.len(), COLLECTIONS.len());
    }

    #[test]
    fn documents_carry_uuids_dbrefs_and_dates() {
        let spec = SampleSpec::megabytes(1);
        let (_, document) = SampleGenerator::new(&spec).nth(10).unwrap();
        assert!(matches!(document.get_document("uuid").unwrap().get("uuid"), Some(Bson::Binary(b)) if b.subtype == bson::spec::BinarySubtype::Uuid));
        assert!(document.get_document("project").unwrap().contains_key("$ref"));
        assert!(matches!(document.get("submissionDate"), Some(Bson::DateTime(_))));
    }

    /// Every field name of a document, at any depth (inside arrays too).
    fn field_names(value: &Bson, names: &mut Vec<String>) {
        match value {
            Bson::Document(document) => {
                for (name, value) in document {
                    names.push(name.clone());
                    field_names(value, names);
                }
            }
            Bson::Array(items) => items.iter().for_each(|item| field_names(item, names)),
            _ => {}
        }
    }

    fn has_decimal128(value: &Bson) -> bool {
        match value {
            Bson::Decimal128(_) => true,
            Bson::Document(document) => document.values().any(has_decimal128),
            Bson::Array(items) => items.iter().any(has_decimal128),
            _ => false,
        }
    }

    /// `value` with every `{ref, id}` document written as a DBRef, counting them.
    fn as_dbrefs(value: &Bson, count: &mut usize) -> Bson {
        match value {
            Bson::Document(document) if document.keys().eq(["ref", "id"]) => {
                *count += 1;
                Bson::Document(doc! { "$ref": document.get("ref").unwrap().clone(), "$id": document.get("id").unwrap().clone() })
            }
            Bson::Document(document) => Bson::Document(document.iter().map(|(k, v)| (k.clone(), as_dbrefs(v, count))).collect()),
            Bson::Array(items) => Bson::Array(items.iter().map(|item| as_dbrefs(item, count)).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn the_ferretdb_variant_has_no_dollar_fields_and_no_decimal128_and_otherwise_the_same_documents() {
        let spec = SampleSpec { database: "ingest".into(), target_bytes: 20 << 20, seed: 9 };
        let mongo: Vec<_> = SampleGenerator::new(&spec).collect();
        let ferret: Vec<_> = SampleGenerator::for_server(&spec, Compat::FerretDb).collect();
        assert_eq!(mongo.len(), ferret.len(), "the same number of documents");
        let mut references = 0;
        for ((mongo_collection, mongo_document), (ferret_collection, ferret_document)) in mongo.iter().zip(&ferret) {
            assert_eq!(mongo_collection, ferret_collection);
            let mut names = Vec::new();
            field_names(&Bson::Document(ferret_document.clone()), &mut names);
            assert!(names.iter().all(|n| !n.starts_with('$')), "FerretDB refuses $-prefixed field names: {names:?}");
            assert!(!has_decimal128(&Bson::Document(ferret_document.clone())));
            // Rename the references back: the documents are otherwise the same.
            let restored = as_dbrefs(&Bson::Document(ferret_document.clone()), &mut references);
            assert_eq!(restored, Bson::Document(mongo_document.clone()));
        }
        assert!(references > 100, "references are kept, under other names: {references}");
        let (_, project) = &ferret[10];
        assert!(project.get_document("project").unwrap().contains_key("ref"));
    }
}
