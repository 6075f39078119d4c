//! `logctl`: the operator's console for the logctl pipeline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use logctl::cli::{
    BenchArgs, Cli, Command, DlqCommand, DownArgs, DriverKind, FaultArgs, KafkaArgs, LoadArgs,
    StatusArgs, TokenArgs, TuiArgs, UpArgs,
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
        Command::Load(args) => load(&layout, args),
        Command::Bench(args) => bench(&layout, args),
        Command::Tui(args) => tui(&layout, args),
    }
}

fn tui(layout: &Layout, args: TuiArgs) -> anyhow::Result<ExitCode> {
    let refresh = logctl_loadgen::plan::parse_duration(&args.refresh)
        .map_err(|e| anyhow::anyhow!("--refresh: {e}"))?
        .max(Duration::from_millis(100));
    let config = layout.load_config()?;
    logctl::tui::run(layout, &config, refresh)?;
    Ok(ExitCode::SUCCESS)
}

fn bench(layout: &Layout, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let down: Vec<String> = stack::status(layout, &config)
        .iter()
        .filter(|c| !c.is_up())
        .map(|c| c.name.clone())
        .collect();
    if !down.is_empty() {
        anyhow::bail!(
            "the stack is not up ({} down): run `logctl up` first",
            down.join(", ")
        );
    }
    let options = logctl::bench::BenchOptions {
        quick: args.quick,
        skip_drain: args.skip_drain,
    };
    let results = runtime()?.block_on(logctl::bench::run(layout, &config, options))?;
    let md = logctl::bench::render(&results);
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, &md)
        .with_context(|| format!("--output {}", args.output.display()))?;
    print!("{md}");
    eprintln!("written to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn load(layout: &Layout, args: LoadArgs) -> anyhow::Result<ExitCode> {
    use logctl::load;
    use logctl_loadgen::plan::{parse_duration, Plan};
    let flag = |name: &str, v: &str| parse_duration(v).map_err(|e| anyhow::anyhow!("{name}: {e}"));
    let ramp = flag("--ramp", &args.ramp)?;
    let plan = match &args.steps {
        Some(steps) => Plan::stepped(steps, ramp, args.count)?,
        None => {
            let duration = match (&args.duration, args.count) {
                (Some(d), _) => Some(flag("--duration", d)?),
                (None, Some(_)) => None,
                (None, None) => Some(Duration::from_secs(30)),
            };
            Plan::new(args.rate, duration, args.count, ramp)?
        }
    };
    let thresholds = load::Thresholds {
        max_p99: args
            .max_p99
            .as_deref()
            .map(|v| flag("--max-p99", v))
            .transpose()?,
        max_error_rate: args
            .max_error_rate
            .as_deref()
            .map(|v| load::parse_rate(v).map_err(|e| anyhow::anyhow!("--max-error-rate: {e}")))
            .transpose()?,
    };
    let verify_timeout = flag("--verify-timeout", &args.verify_timeout)?;
    if args.batch == 0 || args.batch > 1000 {
        anyhow::bail!("--batch: must be from 1 to 1000 (the gateway's batch limit)");
    }
    let config = layout.load_config()?;
    let target = args
        .target
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.ports.gateway));
    let options = logctl_loadgen::engine::Options {
        batch: args.batch,
        max_in_flight: args.max_in_flight,
        seed: args.seed,
        orgs: args.orgs,
        mean_message_bytes: args.message_bytes,
        org_prefix: args.org_prefix.clone(),
        collect_ids: args.verify,
    };
    let gateway = std::sync::Arc::new(logctl_loadgen::http::Gateway::new(
        &target,
        load::token_source(layout),
        args.max_in_flight,
    )?);
    let runtime = runtime()?;
    let mut outcome = runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            }
        });
        let quiet = args.json;
        logctl_loadgen::engine::run(&plan, gateway, &options, stop, |p| {
            if !quiet {
                load::print_progress(p);
            }
        })
        .await
    });
    if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if args.verify {
        let url = match &args.database_url {
            Some(u) => u.clone(),
            None => {
                let password =
                    std::fs::read_to_string(layout.secret_file(stack::postgres::PASSWORD_SECRET))
                        .context(
                        "--verify needs the local stack's database password, or --database-url",
                    )?;
                stack::postgres::database_url(config.ports.postgres, password.trim())
            }
        };
        if !args.json {
            eprintln!(
                "verifying {} acknowledged events in PostgreSQL...",
                outcome.acked.len()
            );
        }
        let verification = runtime.block_on(load::verify(&url, &outcome.acked, verify_timeout))?;
        outcome.report.verify = Some(verification);
    }
    if let Some(path) = &args.hdr_log {
        load::write_hdr_log(path, &outcome.intervals)
            .with_context(|| format!("--hdr-log {}", path.display()))?;
    }
    let json = serde_json::to_string_pretty(&outcome.report)?;
    if let Some(path) = &args.output {
        std::fs::write(path, &json).with_context(|| format!("--output {}", path.display()))?;
    }
    let describe = format!(
        "{} per request, {} organizations, seed {}",
        if args.batch == 1 {
            "1 event".to_owned()
        } else {
            format!("{} events", args.batch)
        },
        args.orgs,
        args.seed
    );
    // Without thresholds or --verify the run only reports; with them, any breach fails it.
    let judged = thresholds.max_p99.is_some() || thresholds.max_error_rate.is_some() || args.verify;
    let broken = if judged {
        load::judge(&outcome.report, &thresholds)
    } else {
        Vec::new()
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{}", load::render(&outcome.report, &describe));
        for b in &broken {
            println!("FAILED      {b}");
        }
        if broken.is_empty() && judged {
            println!("PASSED      every threshold held");
        }
    }
    Ok(if broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
