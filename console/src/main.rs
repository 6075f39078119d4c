//! `logctl`: the operator's console for the logctl pipeline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use logctl::cli::{
    Cli, Command, DlqCommand, DownArgs, DriverKind, FaultArgs, KafkaArgs, StatusArgs, TokenArgs,
    UpArgs,
};
use logctl::dlq;
use logctl::fault;
use logctl::stack;
use logctl::stack::layout::{Layout, StackConfig};
use logctl_consumer::dead_letter::headers;
use logctl_core::auth::Scope;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let layout = Layout::open(&cli.state_dir)?;
    match cli.command {
        Command::Up(args) => up(&layout, args),
        Command::Down(args) => down(&layout, args),
        Command::Status(args) => status(&layout, args),
        Command::Kafka(args) => kafka_tool(&layout, args),
        Command::Fault(args) => fault(&layout, args),
        Command::Dlq(cmd) => dead_letters(&layout, cmd),
        Command::Token(args) => token(&layout, args),
    }
}

fn token(layout: &Layout, args: TokenArgs) -> anyhow::Result<ExitCode> {
    let scopes = if args.scope.is_empty() {
        Scope::ALL.to_vec()
    } else {
        args.scope
            .iter()
            .map(|s| s.trim().parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--scope: {e}"))?
    };
    let ttl = logctl::token::parse_ttl(&args.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    println!(
        "{}",
        logctl::token::mint(layout, &args.org, &scopes, ttl, &args.sub)?
    );
    Ok(ExitCode::SUCCESS)
}

fn up(layout: &Layout, args: UpArgs) -> anyhow::Result<ExitCode> {
    let config = apply_flags(layout.load_config()?, &args);
    layout.save_config(&config)?;
    let outcomes = runtime()?.block_on(stack::up(layout, &config))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for o in &outcomes {
            println!(
                "{:<12} {:<16} pid {:<8} 127.0.0.1:{}",
                o.name, o.action, o.pid, o.port
            );
        }
        println!(
            "\nThe stack is up: POST events to http://127.0.0.1:{}/api/logs\n\
             State, logs and secrets: {}",
            config.ports.gateway,
            layout.root.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_flags(mut config: StackConfig, a: &UpArgs) -> StackConfig {
    let p = &mut config.ports;
    let set = |slot: &mut u16, flag: Option<u16>| {
        if let Some(v) = flag {
            *slot = v;
        }
    };
    set(&mut p.kafka, a.kafka_port);
    set(&mut p.kafka_controller, a.kafka_controller_port);
    set(&mut p.postgres, a.postgres_port);
    set(&mut p.redis, a.redis_port);
    set(&mut p.gateway, a.gateway_port);
    set(&mut p.producer, a.producer_port);
    set(&mut p.consumer, a.consumer_port);
    set(&mut p.prometheus, a.prometheus_port);
    if a.with_prometheus {
        config.prometheus = true;
    }
    if let Some(n) = a.consumers {
        config.consumers = n.max(1);
    }
    config
}

fn down(layout: &Layout, args: DownArgs) -> anyhow::Result<ExitCode> {
    if let Some(pid) = args.after_pid {
        // An empty marker matches any live (non-zombie) process with that pid.
        while stack::process::is_ours(pid, "") {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let config = layout.load_config()?;
    for o in stack::down(layout, &config) {
        println!("{:<12} {}", o.name, o.action);
    }
    if args.purge {
        std::fs::remove_dir_all(&layout.root)
            .with_context(|| format!("cannot delete {}", layout.root.display()))?;
        println!("deleted {}", layout.root.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(layout: &Layout, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let components = stack::status(layout, &config);
    let all_up = components.iter().all(stack::ComponentStatus::is_up);
    if args.json {
        let doc = serde_json::json!({
            "stateDir": layout.root,
            "allUp": all_up,
            "components": components,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{:<12} {:<9} {:<8} PORT", "COMPONENT", "STATUS", "PID");
        for c in &components {
            let pid = c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "{:<12} {:<9} {:<8} 127.0.0.1:{}",
                c.name, c.status, pid, c.port
            );
        }
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn kafka_tool(layout: &Layout, args: KafkaArgs) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let status = stack::kafka::tool(&args.tool, &args.args, layout, &config.ports)?
        .status()
        .context("cannot run java")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn fault(layout: &Layout, args: FaultArgs) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let component = stack::Component::parse(&args.component).with_context(|| {
        format!(
            "unknown component {:?}: choose postgres, kafka, redis, producer, consumer, consumer-N, gateway or prometheus",
            args.component
        )
    })?;
    let driver = match args.driver {
        DriverKind::Local => fault::Driver::Local,
        DriverKind::Compose => fault::Driver::Compose {
            file: args.compose_file,
        },
    };
    let outcome = runtime()?.block_on(fault::apply(
        &driver,
        args.action,
        component,
        layout,
        &config,
    ))?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "{} {}: {}",
            outcome.action, outcome.component, outcome.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn dead_letters(layout: &Layout, cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let kafka = logctl_core::kafka::KafkaSettings {
        bootstrap_servers: format!("127.0.0.1:{}", config.ports.kafka),
        ..Default::default()
    };
    let letters = dlq::list(&kafka, Duration::from_secs(15))?;
    match cmd {
        DlqCommand::List { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("the dead-letter topic is empty");
            } else {
                for l in &letters {
                    let h = |k: &str| l.headers.get(k).map(String::as_str).unwrap_or("-");
                    println!(
                        "offset {:<6} {:<22} from partition {} offset {} after {} attempt(s): {}",
                        l.offset,
                        h(headers::KIND),
                        h(headers::SOURCE_PARTITION),
                        h(headers::SOURCE_OFFSET),
                        h(headers::ATTEMPTS),
                        h(headers::ERROR),
                    );
                }
            }
        }
        DlqCommand::Replay { offsets, all } => {
            let chosen: Vec<dlq::DeadLetter> = letters
                .into_iter()
                .filter(|l| all || offsets.contains(&l.offset))
                .collect();
            if !all && chosen.len() != offsets.len() {
                anyhow::bail!(
                    "some offsets are not in the dead-letter topic; see `logctl dlq list`"
                );
            }
            let sent = runtime()?.block_on(dlq::replay(&kafka, &chosen))?;
            println!("replayed {sent} record(s) to {}", kafka.topic);
        }
    }
    Ok(ExitCode::SUCCESS)
}
