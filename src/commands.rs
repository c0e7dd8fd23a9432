//! The `weir` binary's admin subcommands (clap definitions) and how each runs: a Kafka
//! client (`weir::client`) against `--bootstrap-server`, output as text or JSON.

use std::time::Duration;

use clap::{Args, Subcommand};
use weir::admin::consume::{ConsumeOptions, RecordFormat, Start};
use weir::admin::group::SeekTarget;
use weir::admin::produce::ProduceOptions;
use weir::admin::{
    AdminError, Format, Report, cluster_info, consume, group, key_value, produce, topic,
};
use weir::client::Cluster;

/// How to reach the cluster, shared by every admin command.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// A broker to bootstrap from (Weir or Kafka).
    #[arg(
        long,
        short = 'b',
        visible_alias = "bootstrap",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_server: String,
    /// How long to wait for a connection or an answer.
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    request_timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Create, list, describe, delete topics and change their configs.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce lines from stdin, one record per line.
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
    /// List, describe (with lag), delete consumer groups and move their offsets.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Cluster id, brokers and their addresses.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Check that the bootstrap address and every address the brokers advertise can be
    /// reached from here (the usual first-run failure); exits 1 when one cannot.
    DiagnoseConnection {
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// A topic config, Kafka's name (retention.ms=86400000); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    List {
        /// Include internal topics.
        #[arg(long)]
        internal: bool,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    /// Partitions with leaders and offsets, and the topic's config overrides.
    Describe {
        name: String,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    Delete {
        name: String,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    /// Set or remove topic config overrides (IncrementalAlterConfigs).
    AlterConfig {
        name: String,
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    topic: String,
    /// Send every record to this partition (default: by key, round robin without one).
    #[arg(long)]
    partition: Option<i32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    #[arg(long, default_value = "all", value_name = "all|1|0")]
    acks: String,
    /// A header on every record; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// The summary's format.
    #[arg(long, default_value = "text", value_name = "text|json")]
    format: String,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    topic: String,
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the log start (default: at the end, new records only).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset.
    #[arg(long)]
    offset: Option<i64>,
    /// Start from this group's committed offsets and commit where the command stops.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop after this long without a new record.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// read_uncommitted (default) or read_committed.
    #[arg(long, default_value = "read_uncommitted")]
    isolation: String,
    /// `json` (one object per line), or a template: %t topic, %p partition, %o offset,
    /// %k key, %v value, %T timestamp, %h headers, \n, \t.
    #[arg(long, default_value = "%v\\n")]
    format: String,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    List {
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    /// Members, and CURRENT-OFFSET / LOG-END-OFFSET / LAG per partition.
    Describe {
        group: String,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    Delete {
        group: String,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
    /// Move the group's committed offsets (the group must have no active members).
    Seek {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: Option<i32>,
        /// earliest, latest, an offset, or timestamp:<ms>.
        #[arg(long)]
        to: String,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    Info {
        #[arg(long, default_value = "text", value_name = "text|json")]
        format: String,
    },
}

/// Runs an admin command; the exit code is 0 on success, 1 on failure, 2 on bad usage.
pub fn run(command: Admin, connect: Connect) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, &connect)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(AdminError::Usage(message)) => {
            eprintln!("weir: {message}");
            std::process::ExitCode::from(2)
        }
        Err(AdminError::Failed(message)) if message.is_empty() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weir: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print(report: &Report, format: &str) -> Result<(), AdminError> {
    print!("{}", report.render(Format::parse(format)?));
    Ok(())
}

async fn execute(command: Admin, connect: &Connect) -> Result<(), AdminError> {
    let timeout = Duration::from_millis(connect.request_timeout_ms);
    let bootstrap = connect.bootstrap_server.as_str();
    if let Admin::DiagnoseConnection { format } = &command {
        let parsed = Format::parse(format)?;
        let (report, ok) = cluster_info::diagnose(bootstrap, timeout).await?;
        print!("{}", report.render(parsed));
        return if ok {
            Ok(())
        } else {
            Err(AdminError::Failed(String::new()))
        };
    }
    let mut cluster = Cluster::connect(bootstrap, timeout).await?;
    match command {
        Admin::DiagnoseConnection { .. } => Ok(()),
        Admin::Topic(command) => topic_command(&mut cluster, command).await,
        Admin::Produce(args) => {
            let format = Format::parse(&args.format)?;
            let acks = match args.acks.as_str() {
                "all" | "-1" => -1,
                "1" => 1,
                "0" => 0,
                other => return Err(AdminError::Usage(format!("--acks {other}: all, 1 or 0"))),
            };
            let options = ProduceOptions {
                topic: args.topic,
                partition: args.partition,
                key_separator: args.key_separator,
                acks,
                headers: args
                    .headers
                    .iter()
                    .map(|h| key_value(h))
                    .collect::<Result<_, _>>()?,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let report = produce::run(&mut cluster, &options, stdin).await?;
            if format == Format::Json {
                print!("{}", report.render(format));
            } else {
                eprint!("{}", report.text);
            }
            Ok(())
        }
        Admin::Consume(args) => {
            let start = match (args.from_beginning, args.offset) {
                (true, _) => Start::Earliest,
                (false, Some(o)) => Start::Offset(o),
                (false, None) => Start::Latest,
            };
            let read_committed = match args.isolation.as_str() {
                "read_committed" => true,
                "read_uncommitted" => false,
                other => {
                    return Err(AdminError::Usage(format!(
                        "--isolation {other}: read_committed or read_uncommitted"
                    )));
                }
            };
            let options = ConsumeOptions {
                topic: args.topic,
                partition: args.partition,
                start,
                group: args.group,
                max_messages: args.max_messages,
                idle_timeout: args.timeout_ms.map(Duration::from_millis),
                read_committed,
                format: RecordFormat::parse(&args.format)?,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let mut stdout = tokio::io::stdout();
            let report = consume::run(&mut cluster, &options, &mut stdout).await?;
            eprint!("{}", report.text);
            Ok(())
        }
        Admin::Group(command) => group_command(&mut cluster, command).await,
        Admin::Cluster(ClusterCommand::Info { format }) => {
            print(&cluster_info::info(&mut cluster).await?, &format)
        }
    }
}

async fn topic_command(cluster: &mut Cluster, command: TopicCommand) -> Result<(), AdminError> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            format,
        } => {
            let configs: Vec<(String, String)> = configs
                .iter()
                .map(|c| key_value(c))
                .collect::<Result<_, _>>()?;
            let report =
                topic::create(cluster, &name, partitions, replication_factor, &configs).await?;
            print(&report, &format)
        }
        TopicCommand::List { internal, format } => {
            print(&topic::list(cluster, internal).await?, &format)
        }
        TopicCommand::Describe { name, format } => {
            print(&topic::describe(cluster, &name).await?, &format)
        }
        TopicCommand::Delete { name, format } => {
            print(&topic::delete(cluster, &name).await?, &format)
        }
        TopicCommand::AlterConfig {
            name,
            set,
            delete,
            format,
        } => {
            let set: Vec<(String, String)> =
                set.iter().map(|c| key_value(c)).collect::<Result<_, _>>()?;
            print(
                &topic::alter_config(cluster, &name, &set, &delete).await?,
                &format,
            )
        }
    }
}

async fn group_command(cluster: &mut Cluster, command: GroupCommand) -> Result<(), AdminError> {
    match command {
        GroupCommand::List { format } => print(&group::list(cluster).await?, &format),
        GroupCommand::Describe { group, format } => {
            print(&group::describe(cluster, &group).await?, &format)
        }
        GroupCommand::Delete { group, format } => {
            print(&group::delete(cluster, &group).await?, &format)
        }
        GroupCommand::Seek {
            group,
            topic,
            partition,
            to,
            dry_run,
            format,
        } => {
            let target = SeekTarget::parse(&to)?;
            let report = group::seek(cluster, &group, &topic, partition, target, dry_run).await?;
            print(&report, &format)
        }
    }
}
