//! `milvus-like collection create | describe | list | drop`.

use clap::{Args, Subcommand};
use milvus_like_api::proto::{self, describe_collection_request::Collection};
use milvus_like_api::schema::{
    CollectionSchema, FieldSchema, FieldType, HNSW_DEFAULT_EF_CONSTRUCTION, HNSW_DEFAULT_M,
    IndexSpec, MAX_VARCHAR_LENGTH, Metric,
};
use serde_json::json;

use super::RPC_TIMEOUT;
use super::args::{OutputArgs, OutputFormat, ProxyArgs};
use super::connect::Proxy;
use super::error::CliError;
use super::table::{Table, tso_ms, utc_time};

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection: an INT64 primary key, a FLOAT_VECTOR of --dim, and
    /// any --field.
    Create(CreateArgs),
    /// Show a collection's id, fields and partitions.
    Describe(DescribeArgs),
    /// List every collection.
    List(ListArgs),
    /// Drop a collection and its data.
    Drop(DropArgs),
    /// Make a collection searchable: query nodes load its files and follow its
    /// channels (needs at least one query node).
    Load(super::search::LoadArgs),
    /// Stop serving a collection's searches and free the query nodes' memory.
    Release(super::search::LoadArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Collection name: letters, digits and '_', starting with a letter or '_'.
    pub name: String,
    /// Dimension of the vector field (1..=32768).
    #[arg(long)]
    pub dim: u32,
    /// Name of the INT64 primary key field.
    #[arg(long, default_value = "id")]
    pub primary_key: String,
    /// Name of the FLOAT_VECTOR field.
    #[arg(long, default_value = "vector")]
    pub vector_field: String,
    /// A scalar field, `name:type`: bool, int8, int16, int32, int64, float,
    /// double or varchar:MAX_BYTES (or 'varchar(MAX_BYTES)', quoted for the
    /// shell). Repeat for more fields.
    #[arg(long = "field", value_name = "NAME:TYPE")]
    pub fields: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// How searches compare vectors, fixed for the collection's life: l2
    /// (Euclidean distance), ip (inner product) or cosine.
    #[arg(long, default_value = "l2")]
    pub metric: Metric,
    /// How flushed segments are indexed: hnsw (searched approximately, fast) or
    /// flat (every search exact).
    #[arg(long, value_enum, default_value_t = IndexKind::Hnsw)]
    pub index: IndexKind,
    /// HNSW: links per node (2 to 256); more is more accurate and larger.
    #[arg(long, default_value_t = HNSW_DEFAULT_M)]
    pub hnsw_m: u32,
    /// HNSW: breadth of the search while building (1 to 10000); more is more
    /// accurate and slower to build.
    #[arg(long, default_value_t = HNSW_DEFAULT_EF_CONSTRUCTION)]
    pub hnsw_ef_construction: u32,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub name: String,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DropArgs {
    pub name: String,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

pub async fn run(command: CollectionCommand) -> Result<(), CliError> {
    match command {
        CollectionCommand::Create(args) => create(args).await,
        CollectionCommand::Describe(args) => {
            let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
            let info = describe(&proxy, &args.name).await?;
            print_collection(&info, args.output.output)
        }
        CollectionCommand::List(args) => list(args).await,
        CollectionCommand::Load(args) => super::search::load(args, true).await,
        CollectionCommand::Release(args) => super::search::load(args, false).await,
        CollectionCommand::Drop(args) => {
            let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
            let name = args.name.clone();
            let dropped = proxy
                .call(&format!("drop collection {name:?}"), |mut c| async move {
                    c.drop_collection(proto::DropCollectionRequest { name })
                        .await
                })
                .await
                .map_err(|e| not_found_hint(e, &args.name))?;
            println!("dropped collection {:?} (id {})", args.name, dropped.id);
            Ok(())
        }
    }
}

/// The collection and its validated schema, through the proxy; exit code 3 with
/// a hint when it does not exist.
pub async fn describe(proxy: &Proxy, name: &str) -> Result<proto::CollectionInfo, CliError> {
    let owned = name.to_owned();
    let resp = proxy
        .call(
            &format!("describe collection {name:?}"),
            |mut c| async move {
                c.describe_collection(proto::DescribeCollectionRequest {
                    collection: Some(Collection::Name(owned)),
                })
                .await
            },
        )
        .await
        .map_err(|e| not_found_hint(e, name))?;
    resp.collection
        .ok_or_else(|| CliError::failure(format!("the proxy described no collection {name:?}")))
}

/// The validated schema of a described collection.
pub fn schema_of(info: &proto::CollectionInfo) -> Result<CollectionSchema, CliError> {
    let schema = info
        .schema
        .clone()
        .ok_or_else(|| CliError::failure(format!("collection {} has no schema", info.id)))?;
    CollectionSchema::try_from(schema)
        .map_err(|e| CliError::failure(format!("the stored schema is invalid: {e}")))
}

/// A not-found error, rephrased to say how to find the right name.
pub fn not_found_hint(e: CliError, name: &str) -> CliError {
    if e.code == super::error::ExitCode::NotFound {
        CliError::not_found(format!(
            "collection {name:?} does not exist; `milvus-like collection list` shows the collections"
        ))
    } else {
        e
    }
}

async fn create(args: CreateArgs) -> Result<(), CliError> {
    let schema = build_schema(&args)?;
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let request = proto::CreateCollectionRequest {
        schema: Some(schema),
    };
    let created = proxy
        .raw(|mut c| async move { c.create_collection(request).await })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::AlreadyExists => CliError::bad_input(format!(
                "collection {name:?} already exists; pick another name, or drop it first with \
                 `milvus-like collection drop {name}`",
                name = args.name
            )),
            _ => proxy
                .service
                .failed(&format!("create collection {:?}", args.name), &status),
        })?
        .collection
        .ok_or_else(|| CliError::failure("the proxy returned no collection"))?;
    match args.output.output {
        OutputFormat::Json => print_collection(&created, OutputFormat::Json),
        OutputFormat::Table => {
            let schema = schema_of(&created)?;
            println!(
                "created collection {:?} (id {}): {}",
                args.name,
                created.id,
                fields_summary(&schema)
            );
            Ok(())
        }
    }
}

/// The schema the flags describe; checked here with the same rules as the server
/// so that mistakes are named before anything is sent.
pub fn build_schema(args: &CreateArgs) -> Result<proto::CollectionSchema, CliError> {
    let mut fields = vec![
        proto::FieldSchema {
            name: args.primary_key.clone(),
            data_type: proto::DataType::Int64.into(),
            is_primary_key: true,
            ..proto::FieldSchema::default()
        },
        proto::FieldSchema {
            name: args.vector_field.clone(),
            data_type: proto::DataType::FloatVector.into(),
            dim: args.dim,
            ..proto::FieldSchema::default()
        },
    ];
    for spec in &args.fields {
        fields.push(parse_field(spec)?);
    }
    let schema = proto::CollectionSchema {
        name: args.name.clone(),
        description: args.description.clone(),
        fields,
        metric_type: proto::MetricType::from(args.metric).into(),
        index: Some(index_params(args)),
    };
    CollectionSchema::try_from(schema.clone()).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(schema)
}

/// How flushed segments are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexKind {
    Hnsw,
    Flat,
}

/// The index flags as sent.
fn index_params(args: &CreateArgs) -> proto::IndexParams {
    match args.index {
        IndexKind::Flat => IndexSpec::Flat.into(),
        IndexKind::Hnsw => IndexSpec::Hnsw {
            m: args.hnsw_m,
            ef_construction: args.hnsw_ef_construction,
        }
        .into(),
    }
}

/// `title:varchar(200)`, `year:int32`.
pub fn parse_field(spec: &str) -> Result<proto::FieldSchema, CliError> {
    use proto::DataType as D;
    let bad = |why: &str| {
        CliError::usage(format!(
            "--field {spec:?}: {why}; write NAME:TYPE with TYPE one of bool, int8, int16, \
             int32, int64, float, double, varchar:MAX_BYTES, json"
        ))
    };
    let (name, ty) = spec
        .split_once(':')
        .ok_or_else(|| bad("there is no ':' between name and type"))?;
    let ty = ty.trim().to_ascii_lowercase();
    let mut field = proto::FieldSchema {
        name: name.trim().to_owned(),
        ..proto::FieldSchema::default()
    };
    let data_type = match ty.as_str() {
        "bool" => D::Bool,
        "int8" => D::Int8,
        "int16" => D::Int16,
        "int32" => D::Int32,
        "int64" => D::Int64,
        "float" => D::Float,
        "double" => D::Double,
        "json" => D::Json,
        "varchar" | "string" => {
            return Err(bad(
                "a varchar needs its maximum length in bytes, e.g. varchar:256",
            ));
        }
        t if (t.starts_with("varchar(") && t.ends_with(')')) || t.starts_with("varchar:") => {
            // `varchar:N` needs no quoting in a shell.
            let n = t["varchar".len() + 1..].trim_end_matches(')');
            field.max_length = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_VARCHAR_LENGTH).contains(n))
                .ok_or_else(|| {
                    bad(&format!(
                        "{n:?} is not a length between 1 and {MAX_VARCHAR_LENGTH}"
                    ))
                })?;
            D::Varchar
        }
        t if t.starts_with("float_vector") || t.starts_with("vector") => {
            return Err(bad(
                "a collection has exactly one vector field, set by --dim and --vector-field",
            ));
        }
        _ => return Err(bad(&format!("{ty:?} is not a type"))),
    };
    field.data_type = data_type.into();
    Ok(field)
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let listed = proxy
        .call("list collections", |mut c| async move {
            c.list_collections(proto::ListCollectionsRequest {}).await
        })
        .await?;
    let mut collections = listed.collections;
    collections.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    if args.output.output == OutputFormat::Json {
        let all: Vec<_> = collections.iter().map(collection_json).collect();
        return print_json(&serde_json::Value::Array(all));
    }
    if collections.is_empty() {
        println!("no collections; create one with `milvus-like collection create NAME --dim D`");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "ID", "FIELDS", "CREATED"]);
    for c in &collections {
        let fields = schema_of(c).map_or_else(|e| e.message, |s| fields_summary(&s));
        table.row(vec![
            name_of(c).to_owned(),
            c.id.to_string(),
            fields,
            utc_time(tso_ms(c.created_ts)),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn name_of(c: &proto::CollectionInfo) -> &str {
    c.schema.as_ref().map_or("", |s| s.name.as_str())
}

/// `id INT64 (primary key), vector FLOAT_VECTOR(128), title VARCHAR(200)`
fn fields_summary(schema: &CollectionSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let pk = if f.is_primary_key {
                " (primary key)"
            } else {
                ""
            };
            format!("{} {}{pk}", f.name, type_name(f.ty))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `VARCHAR(200)`, `FLOAT_VECTOR(128)`, `INT64`.
pub fn type_name(ty: FieldType) -> String {
    match ty {
        FieldType::VarChar { max_length } => format!("VARCHAR({max_length})"),
        FieldType::FloatVector { dim } => format!("FLOAT_VECTOR({dim})"),
        other => other.name().to_owned(),
    }
}

fn print_collection(info: &proto::CollectionInfo, format: OutputFormat) -> Result<(), CliError> {
    if format == OutputFormat::Json {
        return print_json(&collection_json(info));
    }
    let schema = schema_of(info)?;
    println!("collection {:?}", schema.name);
    println!("  id:          {}", info.id);
    println!("  created:     {}", utc_time(tso_ms(info.created_ts)));
    if !schema.description.is_empty() {
        println!("  description: {}", schema.description);
    }
    let partitions: Vec<String> = info
        .partitions
        .iter()
        .map(|p| format!("{} (id {})", p.name, p.id))
        .collect();
    println!("  partitions:  {}", partitions.join(", "));
    println!("  metric:      {}", schema.metric);
    println!();
    let mut table = Table::new(&["FIELD", "TYPE", "PRIMARY KEY", "DESCRIPTION"]);
    for f in schema.fields() {
        table.row(field_row(f));
    }
    print!("{}", table.render());
    Ok(())
}

fn field_row(f: &FieldSchema) -> Vec<String> {
    vec![
        f.name.clone(),
        type_name(f.ty),
        if f.is_primary_key { "yes" } else { "" }.to_owned(),
        f.description.clone(),
    ]
}

fn collection_json(info: &proto::CollectionInfo) -> serde_json::Value {
    let schema = info.schema.clone().unwrap_or_default();
    let fields: Vec<_> = schema
        .fields
        .iter()
        .map(|f| {
            let ty = proto::DataType::try_from(f.data_type)
                .map_or_else(|_| f.data_type.to_string(), |t| t.as_str_name().to_owned());
            json!({
                "name": f.name,
                "type": ty.trim_start_matches("DATA_TYPE_"),
                "primary_key": f.is_primary_key,
                "dim": f.dim,
                "max_length": f.max_length,
                "description": f.description,
            })
        })
        .collect();
    let partitions: Vec<_> = info
        .partitions
        .iter()
        .map(|p| json!({"id": p.id, "name": p.name}))
        .collect();
    let metric = Metric::try_from(schema.metric_type)
        .map_or_else(|_| schema.metric_type.to_string(), |m| m.name().to_owned());
    json!({
        "name": schema.name,
        "id": info.id,
        "description": schema.description,
        "metric": metric,
        "created_ts": info.created_ts,
        "created_at_ms": tso_ms(info.created_ts),
        "fields": fields,
        "partitions": partitions,
    })
}

/// Pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_specs_parse_or_say_how_to_write_them() {
        let f = parse_field("title:VARCHAR(200)").expect("valid");
        assert_eq!(f.name, "title");
        assert_eq!(f.max_length, 200);
        assert_eq!(f.data_type, i32::from(proto::DataType::Varchar));
        assert_eq!(
            parse_field("year:int32").expect("valid").data_type,
            i32::from(proto::DataType::Int32)
        );
        let e = parse_field("title:varchar").expect_err("no length");
        assert!(e.message.contains("varchar:256"), "{}", e.message);
        assert_eq!(parse_field("t:varchar:12").expect("valid").max_length, 12);
        assert_eq!(
            parse_field("meta:json").expect("valid").data_type,
            i32::from(proto::DataType::Json)
        );
        let e = parse_field("year").expect_err("no type");
        assert!(
            e.message.starts_with("--field \"year\": there is no ':'"),
            "{}",
            e.message
        );
        let e = parse_field("x:uuid").expect_err("unknown type");
        assert!(
            e.message.contains("\"uuid\" is not a type"),
            "{}",
            e.message
        );
    }

    #[test]
    fn schemas_are_checked_before_sending() {
        let args = CreateArgs {
            name: "docs".into(),
            dim: 0,
            primary_key: "id".into(),
            vector_field: "vector".into(),
            fields: vec![],
            description: String::new(),
            metric: Metric::L2,
            index: IndexKind::Hnsw,
            hnsw_m: HNSW_DEFAULT_M,
            hnsw_ef_construction: HNSW_DEFAULT_EF_CONSTRUCTION,
            proxy: ProxyArgs {
                endpoint: String::new(),
            },
            output: OutputArgs {
                output: OutputFormat::Table,
            },
        };
        let e = build_schema(&args).expect_err("dim 0");
        assert_eq!(e.code, super::super::error::ExitCode::Usage);
        assert_eq!(
            e.message,
            "vector field \"vector\" has dim 0; it must be between 1 and 32768"
        );
    }
}
