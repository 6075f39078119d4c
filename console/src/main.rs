//! `logctl`: the operator's console for the logctl pipeline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use logctl::cli::{
    BenchArgs, Cli, Command, DlqCommand, DownArgs, FaultArgs, KafkaArgs, LoadArgs, ScenarioCommand,
    ScenarioRunArgs, SoakArgs, StatusArgs, StorageArgs, StorageCommand, TokenArgs, TuiArgs, UpArgs,
};
use logctl::dlq;
use logctl::fault;
use logctl::stack;
use logctl::stack::layout::{Layout, StackConfig};
use logctl_contracts::dead_letter::headers;
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
        Command::Storage(args) => storage(&layout, args),
        Command::Soak(args) => soak(&layout, args),
        Command::Token(args) => token(&layout, args),
        Command::Load(args) => load(&layout, args),
        Command::Bench(args) => bench(&layout, args),
        Command::Tui(args) => tui(&layout, args),
        Command::Scenario(cmd) => scenario(&layout, cmd),
        Command::Report(args) => report(args),
    }
}

/// The database `--verify` checks: the flag's, or the local stack's with its password.
fn database_url(
    layout: &Layout,
    config: &StackConfig,
    flag: Option<&String>,
) -> anyhow::Result<String> {
    if let Some(u) = flag {
        return Ok(u.clone());
    }
    let password = std::fs::read_to_string(layout.secret_file(stack::postgres::PASSWORD_SECRET))
        .context("checking the database needs the local stack's password, or --database-url")?;
    Ok(stack::postgres::database_url(
        stack::Component::Postgres.listen(config),
        password.trim(),
    ))
}

fn scenario(layout: &Layout, cmd: ScenarioCommand) -> anyhow::Result<ExitCode> {
    use logctl::scenario;
    match cmd {
        ScenarioCommand::Signals => {
            for (name, about) in scenario::condition::NUMBERS {
                println!("{name:<20} {about}");
            }
            println!(
                "{:<20} closed, half_open or open ({})",
                "breaker.NAME",
                scenario::condition::BREAKERS.join(", ")
            );
            println!(
                "{:<20} up, starting, paused or down ({}, consumer-N)",
                "component.NAME",
                stack::Component::NAMES.join(", ")
            );
            println!(
                "{:<20} ok, warn, stall, stop or err: the group's worst partition by Burrow's rules",
                "consumer_status"
            );
            println!("{:<20} lag of one partition", "lag.N");
            println!("{:<20} drill load answers with that status", "load.STATUS");
            Ok(ExitCode::SUCCESS)
        }
        ScenarioCommand::Check { files } => {
            let Some(drills) = read_drills(&files) else {
                return Ok(ExitCode::from(2));
            };
            for (file, s) in drills {
                println!("{file}: ok ({}, {} steps)", s.name, s.steps.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ScenarioCommand::Run(args) => scenario_run(layout, args),
    }
}

/// Every drill file, or None after printing what is wrong with each bad one.
fn read_drills(
    files: &[std::path::PathBuf],
) -> Option<Vec<(String, logctl::scenario::spec::Scenario)>> {
    match logctl::scenario::load_all(files) {
        Ok(drills) => Some(drills),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            None
        }
    }
}

/// Where drills run: the local stack's gateway and database unless flags say otherwise.
fn drill_context(
    layout: &Layout,
    config: &StackConfig,
    signals: logctl::signals::Collector,
    target: Option<String>,
    database: Option<&String>,
    driver: fault::Driver,
    sample_every: Duration,
) -> logctl::scenario::runner::Context {
    logctl::scenario::runner::Context {
        layout: layout.clone(),
        gateway: target.unwrap_or_else(|| signals.gateway()),
        database_url: database_url(layout, config, database).ok(),
        driver,
        config: config.clone(),
        sample_every,
        signals,
    }
}

fn scenario_run(layout: &Layout, args: ScenarioRunArgs) -> anyhow::Result<ExitCode> {
    use logctl::scenario;
    let Some(drills) = read_drills(&args.files) else {
        eprintln!("nothing was run");
        return Ok(ExitCode::from(2));
    };
    let sample_every = logctl_contracts::duration::parse(&args.sample_every)
        .map_err(|e| anyhow::anyhow!("--sample-every: {e}"))?
        .max(Duration::from_millis(200));
    let config = layout.load_config()?;
    let ctx = drill_context(
        layout,
        &config,
        logctl::signals::Collector::new(layout, &config),
        args.target.clone(),
        args.database_url.as_ref(),
        args.faults.driver(),
        sample_every,
    );
    let outputs = scenario::Outputs {
        report: args.report.clone(),
        report_dir: args.report_dir.clone(),
        html_dir: args.html_dir.clone(),
        junit: args.junit.clone(),
    };
    let (reports, passed) =
        runtime()?.block_on(scenario::run_all(&drills, &ctx, &outputs, args.headless))?;
    Ok(if reports.iter().any(|r| r.interrupted) {
        ExitCode::from(130)
    } else if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn tui(layout: &Layout, args: TuiArgs) -> anyhow::Result<ExitCode> {
    let refresh = logctl_contracts::duration::parse(&args.refresh)
        .map_err(|e| anyhow::anyhow!("--refresh: {e}"))?
        .max(Duration::from_millis(100));
    let config = layout.load_config()?;
    let remote = args
        .config
        .as_deref()
        .map(logctl::tui::StackFile::load)
        .transpose()?;
    let Some(files) = read_drills(&args.scenarios) else {
        return Ok(ExitCode::from(2));
    };
    let (signals, driver) = match &remote {
        Some(file) => (
            logctl::signals::Collector::remote(&file.endpoints),
            file.driver()?,
        ),
        None => (
            logctl::signals::Collector::new(layout, &config),
            Some(fault::Driver::Local),
        ),
    };
    let context = drill_context(
        layout,
        &config,
        signals.clone(),
        None,
        None,
        match (&driver, &remote) {
            (Some(d), _) => d.clone(),
            (None, None) => fault::Driver::Local,
            // A drill's fault steps then fail saying why, rather than act on a local stack.
            (None, Some(_)) => fault::Driver::Exec {
                template: "echo 'no [faults] driver in the --config file' >&2; exit 1".into(),
            },
        },
        Duration::from_secs(1),
    );
    let drills = logctl::tui::Drills { files, context };
    let stack = logctl::tui::Stack {
        signals,
        driver,
        local: remote.is_none(),
    };
    logctl::tui::run(layout, &config, refresh, drills, stack)?;
    Ok(ExitCode::SUCCESS)
}

fn bench(layout: &Layout, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = logctl::bench::BenchOptions {
        quick: args.quick,
        skip_drain: args.skip_drain,
        brokers: args.brokers,
        profile: args.profile.then(|| {
            args.output
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(logctl::bench::profile::DIR)
        }),
    };
    use logctl::bench::record::{self, BenchRecord};
    if args.output.extension().is_some_and(|e| e == "json") {
        anyhow::bail!("--output is the markdown table; its JSON goes beside it as RESULTS.json");
    }
    let max_regression = logctl::report::fraction("--max-regression", &args.max_regression)?;
    // Read before the run: a wrong path should not cost a benchmark.
    let old: Option<BenchRecord> = args
        .compare
        .as_deref()
        .map(|p| -> anyhow::Result<BenchRecord> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("--compare {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("--compare {}: not a RESULTS.json", p.display()))
        })
        .transpose()?;
    // Interrupted, the run is dropped, and with it the stacks made for it (their teardown is in
    // their Drop, which runs before `select!` returns: the message goes first).
    let interrupted = async {
        logctl::interrupt::requested().await;
        eprintln!("\ninterrupted: removing the stacks made for the bench...");
    };
    let results = runtime()?.block_on(async {
        tokio::select! {
            results = logctl::bench::run(layout, options) => results.map(Some),
            () = interrupted => Ok(None),
        }
    });
    let Some(results) = results? else {
        eprintln!("no results written");
        return Ok(ExitCode::from(130));
    };
    let md = logctl::bench::render(&results);
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, &md)
        .with_context(|| format!("--output {}", args.output.display()))?;
    let data = BenchRecord::of(&results);
    let json = args.output.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&data)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let comparison = old
        .as_ref()
        .map(|o| record::compare(o, &data, max_regression));
    if let Some(path) = &args.html {
        std::fs::write(path, record::html(&data, comparison.as_ref()))
            .with_context(|| format!("--html {}", path.display()))?;
    }
    print!("{md}");
    eprintln!(
        "written to {} and {}",
        args.output.display(),
        json.display()
    );
    Ok(
        if logctl::report::print_comparison(comparison.as_ref(), false) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// `logctl report RUN.json`: a saved run rendered again, and compared when asked.
fn report(args: logctl::cli::ReportArgs) -> anyhow::Result<ExitCode> {
    let record = logctl::report::record::LoadRecord::read(&args.run)?;
    let outputs = logctl::report::Outputs::new(None, args.html.clone(), &args.compare)?;
    let title = format!("logctl load: {}", args.run.display());
    let comparison = logctl::report::write(&record, &title, &outputs)?;
    print!("{}", logctl::load::render(&record.report, "a saved run"));
    Ok(
        if logctl::report::print_comparison(comparison.as_ref(), false) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn load(layout: &Layout, args: LoadArgs) -> anyhow::Result<ExitCode> {
    use logctl::load;
    use logctl_contracts::duration::parse as parse_duration;
    use logctl_loadgen::plan::Plan;
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
        strict_schedule: args.strict_schedule,
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
        request_timeout: flag("--timeout", &args.timeout)?,
    };
    let gateway = std::sync::Arc::new(logctl_loadgen::http::Gateway::new(
        &target,
        load::token_source(layout),
        options.request_timeout,
    )?);
    let outputs =
        logctl::report::Outputs::new(args.output.clone(), args.report.clone(), &args.compare)?;
    let runtime = runtime()?;
    // On the local stack, what it did meanwhile (stored rate, lag) goes into the record.
    let watch = args.target.is_none() && (args.output.is_some() || args.report.is_some());
    let (mut outcome, stack_points) = runtime.block_on(async {
        let started = std::time::Instant::now();
        let observer = watch.then(|| {
            logctl::scenario::observe::Observer::start(
                logctl::signals::Collector::new(layout, &config),
                Duration::from_secs(1),
                started,
            )
        });
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                logctl::interrupt::requested().await;
                stop.cancel();
            }
        });
        let quiet = args.json;
        let outcome = logctl_loadgen::engine::run(&plan, gateway, &options, stop, |p| {
            if !quiet {
                load::print_progress(p);
            }
        })
        .await;
        let points = observer.map(|o| o.finish()).unwrap_or_default();
        (outcome, points)
    });
    if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if args.verify {
        let url = database_url(layout, &config, args.database_url.as_ref())?;
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
    let mut record =
        logctl::report::record::LoadRecord::new(outcome.report.clone(), &outcome.intervals);
    record.stack = stack_points
        .iter()
        .map(logctl::report::stack_point)
        .collect();
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
    let judged = thresholds.max_p99.is_some()
        || thresholds.max_error_rate.is_some()
        || thresholds.strict_schedule
        || args.verify;
    let mut broken = if judged {
        load::judge(&outcome.report, &thresholds)
    } else {
        Vec::new()
    };
    let title = format!(
        "logctl load: {} events/s at {}",
        outcome.report.planned_rate, outcome.report.target
    );
    let comparison = logctl::report::write(&record, &title, &outputs)?;
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
    if logctl::report::print_comparison(comparison.as_ref(), args.json) {
        broken.push("regression against the baseline".into());
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
    // Ports once picked stay: a later `up --free-ports` of the same stack keeps them.
    let fresh = !layout.config_file().exists();
    let before = layout.load_config()?;
    let config = apply_flags(layout, before.clone(), &args, fresh)?;
    layout.save_config(&config)?;
    let outcomes = match runtime()?.block_on(stack::up(layout, &config)) {
        Ok(outcomes) => outcomes,
        // Refused before anything started (`--consumers 3` meeting a taken port): the stack
        // keeps the shape it had, or `status`, the console and the next `up` would all count
        // on instances that never ran.
        Err(e @ stack::StackError::PortTaken { .. }) if !fresh => {
            layout.save_config(&before)?;
            return Err(anyhow::Error::new(e).context("the stack keeps its shape"));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for o in &outcomes {
            println!(
                "{:<12} {:<16} pid {:<8} {}",
                o.name, o.action, o.pid, o.address
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

/// Ports handed out by this `up`, so no two components get the same one.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Takes `ports` if each is free now and none was handed out before.
fn claim(ports: &[u16]) -> bool {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = ports
        .iter()
        .all(|p| !handed_out.contains(p) && stack::process::port_is_free(*p));
    if free {
        handed_out.extend_from_slice(ports);
    }
    free
}

/// A first port such that it and the `n - 1` ports each `stride` further are free (instance
/// i of a service listens on the first + stride * i). Below the kernel's ephemeral range: a
/// port the kernel hands out for outgoing connections could be taken by any client while its
/// component is stopped (a drill's restart of Kafka once found its controller port so taken).
fn free_run(n: u16, stride: u16) -> anyhow::Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = n.saturating_sub(1).saturating_mul(stride);
    let range = 10_000..low.max(11_000).saturating_sub(span).max(10_001);
    for _ in 0..1000 {
        let start: u16 = rand::random_range(range.clone());
        let ports: Vec<u16> = (0..n).map(|i| start + i * stride).collect();
        if claim(&ports) {
            return Ok(start);
        }
    }
    anyhow::bail!("no run of {n} free ports {stride} apart found below {low}")
}

/// Instances of each service whose ports `--free-ports` finds free and claims when a stack is
/// made, however many it starts with, so that scaling up later does not meet a port the same
/// `up` handed to another component.
const SCALE_ROOM: u16 = 8;

/// One free loopback port, as [`free_run`] picks them.
fn free_port() -> anyhow::Result<u16> {
    free_run(1, 1)
}

fn apply_flags(
    layout: &Layout,
    mut config: StackConfig,
    a: &UpArgs,
    fresh: bool,
) -> anyhow::Result<StackConfig> {
    if let Some(n) = a.brokers {
        if !fresh && n != config.brokers {
            anyhow::bail!(
                "this stack was made with {} Kafka broker(s) and their storage is formatted for that \
                 quorum; run `logctl up` without --brokers to keep it, or `logctl down --purge` \
                 (deletes its data) and then `logctl up --brokers {n}`",
                config.brokers
            );
        }
        config.brokers = n;
    }
    if let Some(n) = a.consumers {
        config.consumers = n.max(1);
    }
    if let Some(n) = a.producers {
        config.producers = n.max(1);
    }
    if let Some(n) = a.gateways {
        config.gateways = n.max(1);
    }
    if a.free_ports && fresh {
        // Each broker's client and controller ports side by side (BROKER_PORT_STRIDE).
        let brokers = free_run(config.brokers.max(1) * stack::layout::BROKER_PORT_STRIDE, 1)?;
        config.ports.kafka = brokers;
        config.ports.kafka_controller = brokers + 1;
        let p = &mut config.ports;
        for slot in [
            &mut p.postgres,
            &mut p.redis,
            &mut p.gateway,
            &mut p.prometheus,
        ] {
            *slot = free_port()?;
        }
        // Room to scale: a drill's `scale consumers to 6` on a stack made with one found the
        // sixth's port taken (nothing had claimed it when the stack was made).
        let (stride, room) = (stack::layout::INSTANCE_PORT_STRIDE, SCALE_ROOM);
        p.consumer = free_run(config.consumers.max(room), stride)?;
        p.producer = free_run(config.producers.max(room), stride)?;
        p.gateway_backend = free_run(config.gateways.max(room), stride)?;
        // The control port and, right after it, one link per broker slot and producer.
        let links = 1 + 3 + stack::layout::MAX_BROKERS + config.producers.max(1);
        p.fault_proxy = free_run(links, 1)?;
    }
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
    set(&mut p.gateway_backend, a.gateway_backend_port);
    set(&mut p.producer, a.producer_port);
    set(&mut p.consumer, a.consumer_port);
    set(&mut p.prometheus, a.prometheus_port);
    set(&mut p.fault_proxy, a.fault_proxy_port);
    if a.with_prometheus {
        config.prometheus = true;
    }
    apply_storage_flags(&mut config.storage, a)?;
    if let Some(size) = &a.postgres_disk {
        let bytes = parse_size(size).context("--postgres-disk")?;
        if !fresh && config.postgres_disk != Some(bytes) {
            anyhow::bail!(
                "--postgres-disk is set when a stack is made (its tables are made on it):                  `logctl down --purge` (deletes its data), then `logctl up --postgres-disk {size}`"
            );
        }
        if let Some(why) = stack::disk::EventsDisk::unavailable() {
            anyhow::bail!(why);
        }
        config.postgres_disk = Some(bytes);
    }
    let readdress = (a.with_proxies && !config.proxies) || (a.hosts && config.hosts.is_none());
    if readdress {
        // Brokers advertise their address, services are given their dependencies': all
        // fixed when each process starts.
        let running: Vec<String> = stack::status(layout, &config)
            .into_iter()
            .filter(|c| c.pid.is_some())
            .map(|c| c.name)
            .collect();
        if !running.is_empty() {
            anyhow::bail!(
                "--with-proxies and --hosts change every address the stack's processes were \
                 started with, and {} still run: `logctl down` first (the data stays), then \
                 `logctl up` with the flag",
                running.join(", ")
            );
        }
    }
    if a.with_proxies {
        config.proxies = true;
    }
    if a.hosts && config.hosts.is_none() {
        if let Some(why) = stack::hosts::unavailable() {
            anyhow::bail!(why);
        }
        config.hosts = Some(stack::hosts::pick()?.octet);
    }
    Ok(config)
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
    let kafka_running = components
        .iter()
        .any(|c| c.name.starts_with("kafka") && c.is_up());
    // Asking the cluster needs a broker to answer; with none up there is nothing to ask.
    let cluster = kafka_running.then(|| stack::cluster::status(layout, &config, &components));
    let proxy_up = components
        .iter()
        .any(|c| c.name == stack::faultproxy::NAME && c.is_up());
    let links = proxy_up.then(|| fault_links(&config));
    let hosts = config.net().map(|net| stack::hosts::status(net, &config));
    if args.json {
        let doc = serde_json::json!({
            "stateDir": layout.root,
            "allUp": all_up,
            "components": components,
            "kafka": cluster,
            "links": links.as_ref().and_then(|l| l.as_ref().ok()),
            "linksError": links.as_ref().and_then(|l| l.as_ref().err().map(ToString::to_string)),
            "hosts": hosts,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{:<12} {:<9} {:<8} {:>8}  PORT",
            "COMPONENT", "STATUS", "PID", "RSS"
        );
        for c in &components {
            let pid = c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let rss = c
                .rss_mib
                .map_or_else(|| "-".into(), |m| format!("{m:.0} MiB"));
            println!(
                "{:<12} {:<9} {:<8} {:>8}  {}",
                c.name, c.status, pid, rss, c.address
            );
        }
        if let Some(k) = &cluster {
            print_cluster(k);
        }
        if let Some(hosts) = &hosts {
            print_hosts(hosts);
        }
        match &links {
            Some(Ok(links)) => print_links(links),
            Some(Err(e)) => println!("\n(the fault proxy did not answer: {e})"),
            None => {}
        }
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The fault proxy's links with their faults, as `status` shows them.
fn fault_links(
    config: &stack::layout::StackConfig,
) -> anyhow::Result<Vec<logctl_faultproxy::control::LinkView>> {
    let control = stack::faultproxy::Control::new(config)?;
    Ok(runtime()?.block_on(control.links())?)
}

fn print_hosts(hosts: &[stack::hosts::HostStatus]) {
    println!("\n{:<12} {:<16} {:<9} CUT FROM", "HOST", "ADDRESS", "LINK");
    for h in hosts {
        let cut = if h.cut_from.is_empty() {
            "-".to_owned()
        } else {
            h.cut_from.join(", ")
        };
        println!("{:<12} {:<16} {:<9} {cut}", h.name, h.address, h.link);
    }
}

fn print_links(links: &[logctl_faultproxy::control::LinkView]) {
    println!("\n{:<12} {:<22} {:>6}  FAULTS", "LINK", "TO", "OPEN");
    for l in links {
        let faults = if l.faults.is_empty() {
            "-".to_owned()
        } else {
            l.faults
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("{:<12} {:<22} {:>6}  {faults}", l.name, l.upstream, l.open);
    }
}

fn print_cluster(k: &stack::cluster::ClusterStatus) {
    println!(
        "\n{:<12} {:<9} {:<5} {:<11} LEADS",
        "BROKER", "STATUS", "NODE", "IN CLUSTER"
    );
    for b in &k.brokers {
        println!(
            "{:<12} {:<9} {:<5} {:<11} {} partitions{}",
            b.name,
            b.status,
            b.node_id,
            if b.in_cluster { "yes" } else { "no" },
            b.partitions_led,
            if b.controller {
                "  (active controller)"
            } else {
                ""
            }
        );
    }
    println!(
        "partitions: {} under-replicated, {} under min ISR ({} of {} copies), {} offline",
        k.under_replicated, k.under_min_isr, k.min_insync_replicas, k.replication_factor, k.offline
    );
    if !k.quorum.has_majority {
        println!(
            "controller quorum lost: {} of {} voters running; the partition counts are the last \
             the cluster settled, and writes wait (the producer spools) until a majority is back",
            k.quorum.running, k.quorum.voters
        );
    }
    if let Some(e) = &k.error {
        println!("(the cluster did not answer: {e})");
    }
}

fn kafka_tool(layout: &Layout, args: KafkaArgs) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let status = stack::kafka::tool(&args.tool, &args.args, layout, &config)?
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
    use fault::link;
    let config = layout.load_config()?;
    let named = args.component.as_deref();
    let outcome = runtime()?.block_on(async {
        if let Some(action) = args.action.process() {
            let name =
                named.context("name the component to act on, e.g. `logctl fault stop postgres`")?;
            let target = fault::Target::parse(name).with_context(|| {
                format!(
                    "unknown component {name:?}: choose {}, kafka-N, consumer-N or {}",
                    stack::Component::NAMES.join(", "),
                    fault::Target::KAFKA_LEADER
                )
            })?;
            let component = target.resolve(action, layout, &config).await?;
            let driver = args.faults.driver();
            return anyhow::Ok(fault::apply(&driver, action, component, layout, &config).await?);
        }
        if let Some(fill) = args.action.disk() {
            return Ok(fault::disk::apply(fill, named, layout)?);
        }
        if let Some(verb) = args.action.host() {
            let f = fault::host::HostFault::parse(verb, named, args.amount.as_deref())
                .map_err(|e| anyhow::anyhow!(e))?;
            return Ok(fault::host::apply(f, layout, &config).await?.0);
        }
        let links = named
            .map(link::Links::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?;
        let Some(kind) = args.action.link() else {
            return Ok(link::clear(links, layout, &config).await?);
        };
        let links = links.with_context(|| {
            format!(
                "name the link, e.g. `logctl fault {} kafka ...`",
                link::Kind::NAMES[0]
            )
        })?;
        let words = link::Words {
            value: args.amount.as_deref(),
            jitter: args.jitter.as_deref(),
            direction: args.direction.as_deref(),
            toxicity: args.toxicity,
        };
        let fault = link::fault(kind, &words).map_err(|e| anyhow::anyhow!(e))?;
        Ok(link::set(links, &fault, layout, &config).await?.0)
    })?;
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

/// `512M`, `2G`, `1.5G` (powers of 1024), or bytes.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (number, scale) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => {
            let unit = s[at..]
                .trim_end_matches(['B', 'b', 'i'])
                .to_ascii_uppercase();
            let scale = match unit.as_str() {
                "K" => 1u64 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                _ => anyhow::bail!("{s:?}: write a size like 512M or 2G"),
            };
            (&s[..at], scale)
        }
        None => (s, 1),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?}: write a size like 512M or 2G"))?;
    let bytes = (n * scale as f64) as u64;
    anyhow::ensure!(bytes >= 64 << 20, "{s:?}: at least 64M");
    Ok(bytes)
}

/// `--retention`, `--partition-interval`, `--kafka-retention[-bytes]`, checked together.
fn apply_storage_flags(
    storage: &mut stack::layout::StorageConfig,
    a: &UpArgs,
) -> anyhow::Result<()> {
    let secs = |flag: &str, v: &String| -> anyhow::Result<u64> {
        logctl_contracts::duration::parse(v)
            .map(|d| d.as_secs())
            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    if let Some(v) = &a.retention {
        storage.postgres.retention_secs = secs("retention", v)?;
    }
    if let Some(v) = &a.partition_interval {
        storage.postgres.partition_interval_secs = secs("partition-interval", v)?;
    }
    if let Some(v) = &a.kafka_retention {
        storage.kafka.retention_secs = secs("kafka-retention", v)?.max(1);
    }
    if let Some(v) = a.kafka_retention_bytes {
        storage.kafka.retention_bytes = if v <= 0 { -1 } else { v };
    }
    logctl_contracts::schema::partitions::Policy::try_from(&storage.postgres)
        .map_err(|e| anyhow::anyhow!("--retention / --partition-interval: {e}"))?;
    Ok(())
}

/// One connection to the stack's database, for the commands that read it.
async fn connect_database(url: &str) -> anyhow::Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .context("cannot reach the stack's PostgreSQL: is it up (`logctl status`)?")
}

fn soak(layout: &Layout, args: SoakArgs) -> anyhow::Result<ExitCode> {
    use logctl::soak;
    let config = layout.load_config()?;
    let url = database_url(layout, &config, args.database_url.as_ref())?;
    let duration = |flag: &str, v: &str| {
        logctl_contracts::duration::parse(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let opts = soak::Options {
        rate: args.rate,
        duration: duration("duration", &args.duration)?,
        warmup: duration("warmup", &args.warmup)?,
        sample_every: duration("sample-every", &args.sample_every)?.max(Duration::from_secs(1)),
    };
    anyhow::ensure!(args.rate > 0.0, "--rate: events per second, above 0");
    let report = runtime()?.block_on(async {
        let pool = connect_database(&url).await?;
        soak::run(layout, &config, &pool, opts).await
    })?;
    print!("{}", soak::render(&report));
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, soak::svg(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn storage(layout: &Layout, args: StorageArgs) -> anyhow::Result<ExitCode> {
    use logctl::storage;
    let config = layout.load_config()?;
    let url = database_url(layout, &config, args.database_url.as_ref())?;
    let policy = logctl_contracts::schema::partitions::Policy::try_from(&config.storage.postgres)
        .map_err(|e| anyhow::anyhow!("stack.toml's storage settings: {e}"))?;
    let kafka = logctl_core::kafka::KafkaSettings {
        bootstrap_servers: config.bootstrap_servers(),
        ..Default::default()
    };
    runtime()?.block_on(async {
        let pool = connect_database(&url).await?;
        match args.command {
            None => {
                let mut report = storage::report(&pool, &policy, &kafka, args.exact).await?;
                if let Some(bytes) = config.postgres_disk {
                    let free = stack::disk::EventsDisk::new(layout).available().ok();
                    report.volume = free.map(|free| storage::Volume { bytes, free });
                }
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", storage::render(&report));
                }
            }
            Some(StorageCommand::Prune {
                older_than,
                dry_run,
            }) => {
                let older_than = logctl_contracts::duration::parse(&older_than)
                    .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
                let pruned = storage::prune(&pool, older_than, dry_run).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&pruned)?);
                } else {
                    print!("{}", storage::render_prune(&pruned));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn dead_letters(layout: &Layout, cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    let config = layout.load_config()?;
    let kafka = logctl_core::kafka::KafkaSettings {
        bootstrap_servers: config.bootstrap_servers(),
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
