// `npm run bench`: the project side by side with Ansible on a lab instance of its own, in one run.
// The job is the lab stack's boot-time half (kernel arguments, vfio-pci for the four USB
// controllers, the initramfs, one reboot and its proof); bench/vfio-host.yml is the same job as a
// good Ansible user writes it. Measured: a converge from a pristine lab with each tool, then N
// no-op runs of each, alternating (project `up` and `preview`, Ansible's run and `--check`),
// with wall and CPU seconds and the SSH logins the lab's sshd saw; and where the project's no-op
// `up` and its converge spent their time. Writes bench/results.md and prints it.
//
//   npm run bench -- [--runs N] [--lab NAME]
//   npm run bench -- --smoke --lab-state DIR --stack NAME   (the tests: preview vs --check, once, on a converged lab)
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { TimingLine } from "../providers/timings";
import { labInstanceEnv, readLabState, type LabState } from "../scripts/lab/labState";
import { writeLabStack } from "../scripts/labStack";
import { projectRoot, pulumiCli, pulumiEnv } from "../scripts/pulumiEnv";
import { breakdown, breakdownTable, comparisonTable, cpuByProcess, cpuTable, type Comparison, type RunFigures } from "./figures";

interface Options {
  runs: number;
  lab: string;
  smoke: boolean;
  labState?: string;
  stack?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { runs: 5, lab: "bench", smoke: false };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${argv[i - 1]} needs a value`);
      return v;
    };
    switch (argv[i]) {
      case "--runs":
        options.runs = Number(value());
        if (!Number.isInteger(options.runs) || options.runs < 1) throw new Error("--runs takes a whole number ≥ 1");
        break;
      case "--lab":
        options.lab = value();
        break;
      case "--smoke":
        options.smoke = true;
        break;
      case "--lab-state":
        options.labState = value();
        break;
      case "--stack":
        options.stack = value();
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}: npm run bench -- [--runs N] [--lab NAME] | --smoke --lab-state DIR --stack NAME`);
    }
  }
  if (options.smoke && (!options.labState || !options.stack)) throw new Error("--smoke needs --lab-state DIR and --stack NAME of a converged lab stack");
  return options;
}

const benchDir = path.join(projectRoot, "bench");
const labSh = path.join(projectRoot, "scripts/lab/lab.sh");
const log = (line: string) => console.error(`[bench] ${line}`);

/**
 * The lab instance's environment: its own overlay, key and port over the cached image, and two
 * vCPUs, like the hosts users run this on: the project reads a host's facts over parallel SSH
 * sessions, which the test lanes' one-vCPU guest serializes (no-op up measured 9.5 s with two, 14.5 with one).
 */
function labEnv(stateDir: string): NodeJS.ProcessEnv {
  return { ...process.env, LAB_STATE: stateDir, LAB_CPUS: "2" };
}

const onLab = (stateDir: string, script: string) => execFileSync("bash", [labSh, "ssh", "--", script], { env: labEnv(stateDir), encoding: "utf8" });

/** Logins sshd accepted this boot (its own, for this count, included). */
const acceptedLogins = (stateDir: string) => Number(onLab(stateDir, "journalctl _COMM=sshd -b -o cat --no-pager | grep -c '^Accepted ' || true").trim());

interface Measured extends RunFigures {
  /** Epoch ms when the command started and ended, to line up the processes' timing lines. */
  start: number;
  end: number;
  timings: TimingLine[];
  output: string;
}

/** Runs a command under /usr/bin/time (the CPU of its whole process tree), with the project's timing lines on. */
function measure(stateDir: string, command: string, args: string[], env: NodeJS.ProcessEnv, expectExit = 0): Measured {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-bench-"));
  const timingFile = path.join(scratch, "timings.jsonl");
  const timeFile = path.join(scratch, "time");
  const before = acceptedLogins(stateDir);
  const start = Date.now();
  const result = spawnSync("/usr/bin/time", ["-o", timeFile, "-f", "%e %U %S", command, ...args], {
    cwd: projectRoot,
    env: { ...env, VFIO_HOST_TIMINGS: timingFile },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const end = Date.now();
  const output = `${result.stdout}${result.stderr}`;
  if (result.status !== expectExit) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.status} (expected ${expectExit}):\n${output.slice(-3000)}`);
  }
  const [, user, sys] = fs.readFileSync(timeFile, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  const timings = fs.existsSync(timingFile)
    ? fs.readFileSync(timingFile, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as TimingLine)
    : [];
  fs.rmSync(scratch, { recursive: true, force: true });
  const sshLogins = acceptedLogins(stateDir) - before - 1;
  return { wallS: (end - start) / 1000, cpuS: user + sys, sshLogins, start, end, timings, output };
}

/** Ansible's side: an inventory for the lab with its host key pinned, and a control-socket dir of the bench's own. */
class AnsibleRunner {
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-bench-ansible-"));
  readonly env: NodeJS.ProcessEnv;

  constructor(private readonly lab: LabState) {
    fs.writeFileSync(path.join(this.dir, "known_hosts"), `[${lab.host}]:${lab.port} ${lab.hostKey}\n`);
    const sshArgs = `-o UserKnownHostsFile=${path.join(this.dir, "known_hosts")} -o StrictHostKeyChecking=yes`;
    fs.writeFileSync(
      path.join(this.dir, "inventory.ini"),
      `[lab]\nlab ansible_host=${lab.host} ansible_port=${lab.port} ansible_user=${lab.user} ` +
        `ansible_ssh_private_key_file=${lab.privateKeyPath} ansible_ssh_common_args='${sshArgs}'\n`,
    );
    this.env = {
      ...process.env,
      ANSIBLE_CONFIG: path.join(benchDir, "ansible.cfg"),
      ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(this.dir, "cp"),
      ANSIBLE_LOCAL_TEMP: path.join(this.dir, "tmp"),
      ANSIBLE_NOCOLOR: "1",
    };
  }

  args(check: boolean): string[] {
    return ["-i", path.join(this.dir, "inventory.ini"), path.join(benchDir, "vfio-host.yml"), ...(check ? ["--check"] : [])];
  }

  /** Ends the ControlPersist master Ansible left (it outlives the runs by design) and removes the dir. */
  close(): void {
    const controlPath = path.join(this.dir, "cp", "%C");
    spawnSync("ssh", ["-o", `ControlPath=${controlPath}`, "-p", String(this.lab.port), "-O", "exit", `${this.lab.user}@${this.lab.host}`], { stdio: "ignore" });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Ansible's recap line: `changed=N` must be 0 on a converged host, or the run was not a no-op. */
function ansibleChanged(output: string): number {
  const match = /changed=(\d+)/.exec(output);
  if (!match) throw new Error(`no PLAY RECAP in Ansible's output:\n${output.slice(-2000)}`);
  return Number(match[1]);
}

/** Whether the CLI's closing summary counts anything but unchanged resources. */
function pulumiChanged(output: string): boolean {
  const summary = (output.split("Resources:")[1] ?? "").split("Duration:")[0];
  return /\b(created|updated|deleted|replaced|to create|to update|to delete|to replace)\b/.test(summary);
}

function machine(lab: LabState): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? "CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; lab VM under ${lab.accel.toUpperCase()}, Debian 12; ${execFileSync("ansible-playbook", ["--version"], { encoding: "utf8" }).split("\n")[0]}; ${pulumiCli(pulumiEnv(), ["version"]).trim()} (Pulumi CLI)`;
}

interface Report {
  title: string;
  lab: LabState;
  comparisons: Comparison[];
  noopBreakdown?: string;
  previewBreakdown?: string;
  converge?: string;
  command: string;
}

function render(r: Report): string {
  return [
    `# ${r.title}`,
    "",
    `Run: \`${r.command}\` on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC.`,
    `Machine: ${machine(r.lab)}.`,
    "",
    "Medians of the runs, alternating tools; CPU is the whole process tree's (Ansible's ControlPersist master, which outlives each run by design, is not counted); SSH logins are the `Accepted` lines the lab's sshd logged during the run.",
    "",
    comparisonTable(r.comparisons),
    ...(r.converge ? ["", "## Converge from pristine: where the project's time went", "", r.converge] : []),
    ...(r.noopBreakdown ? ["", "## Where a no-op `pulumi up` spends its time (the median run)", "", r.noopBreakdown] : []),
    ...(r.previewBreakdown ? ["", "## Where a `pulumi preview` spends its time", "", r.previewBreakdown] : []),
    "",
  ].join("\n");
}

const medianRun = (runs: Measured[]) => [...runs].sort((a, b) => a.wallS - b.wallS)[Math.floor((runs.length - 1) / 2)];
/** A run's breakdown in time, then whose CPU it spent. */
const whereItWent = (m: Measured) => `${breakdownTable(breakdown(m.timings, m.start, m.end))}\n\n${cpuTable(cpuByProcess(m.timings, m.cpuS))}`;
const figures = (m: Measured): RunFigures => ({ wallS: m.wallS, cpuS: m.cpuS, sshLogins: m.sshLogins });

/**
 * Where a converge's time went: waiting for the reboot (HostReboot's step outside its SSH
 * commands), the host's rebuilds (the trial initramfs, the boot menu, update-grub: the commands
 * over 10 s), and the rest, reading facts included: the tool's own time.
 */
function convergeSplit(m: Measured): string {
  const commands = m.timings.filter((t) => t.what === "command");
  const long = commands.filter((t) => t.end - t.start >= 10_000);
  const longS = long.reduce((sum, t) => sum + (t.end - t.start) / 1000, 0);
  const reboot = m.timings.filter((t) => t.what.startsWith("HostReboot.") && t.what !== "HostReboot.check" && t.what !== "HostReboot.diff");
  const rebootWaitS = reboot.reduce((sum, t) => {
    const inside = commands.filter((c) => c.step === t.what).reduce((s, c) => s + (c.end - c.start), 0);
    return sum + (t.end - t.start - inside) / 1000;
  }, 0);
  const toolS = m.wallS - longS - rebootWaitS;
  return [
    `| part | seconds |`,
    `|---|---|`,
    `| the whole \`pulumi up\` | ${m.wallS.toFixed(1)} |`,
    `| waiting for the reboot (HostReboot outside its commands) | ${rebootWaitS.toFixed(1)} |`,
    ...long.map((t) => `| host rebuild in ${t.step}: \`${t.command?.split("\n")[0].slice(0, 60)}\` | ${((t.end - t.start) / 1000).toFixed(1)} |`),
    `| **the tool's own time**, reading facts included (target ≤ 10) | **${toolS.toFixed(1)}** |`,
  ].join("\n");
}

async function smoke(options: Options): Promise<void> {
  const stateDir = options.labState!;
  const lab = readLabState(path.join(stateDir, "lab.json"));
  const ansible = new AnsibleRunner(lab);
  try {
    const env = { ...process.env, ...pulumiEnv(process.env.VFIO_HOST_STATE_DIR) };
    const preview = measure(stateDir, "pulumi", ["preview", "--stack", options.stack!], env);
    const check = measure(stateDir, "ansible-playbook", ansible.args(true), ansible.env);
    if (ansibleChanged(check.output) !== 0) throw new Error(`ansible-playbook --check would change the converged lab:\n${check.output.slice(-2000)}`);
    console.log(
      render({
        title: "vfio-host bench (smoke: one preview each)",
        lab,
        command: `npm run bench -- --smoke --stack ${options.stack}`,
        comparisons: [
          { job: "preview of a converged host", project: { command: "pulumi preview", runs: [figures(preview)] }, ansible: { command: "ansible-playbook --check", runs: [figures(check)] }, target: 0.15 },
        ],
        previewBreakdown: whereItWent(preview),
      }),
    );
  } finally {
    ansible.close();
  }
}

/** Starts the bench's own lab instance from a pristine overlay; returns its facts. */
function pristineLab(stateDir: string): LabState {
  const started = Date.now();
  execFileSync("bash", [labSh, "reset"], { env: labEnv(stateDir), stdio: ["ignore", "ignore", "inherit"] });
  execFileSync("bash", [labSh, "up"], { env: labEnv(stateDir), stdio: ["ignore", "ignore", "inherit"] });
  log(`pristine lab up in ${Math.round((Date.now() - started) / 1000)} s`);
  return readLabState(path.join(stateDir, "lab.json"));
}

async function full(options: Options): Promise<void> {
  const stateDir = labInstanceEnv(options.lab).LAB_STATE!;
  const backend = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-bench-state-"));
  const stack = `lab-${options.lab}`;
  const env = { ...process.env, ...pulumiEnv(backend) };
  const up = ["up", "--yes", "--skip-preview", "--stack", stack];
  const preview = ["preview", "--stack", stack];
  let ansible: AnsibleRunner | undefined;
  try {
    log("converge with the project from a pristine lab");
    let lab = pristineLab(stateDir);
    writeLabStack(stack, lab, pulumiEnv(backend));
    pulumiCli(pulumiEnv(backend), ["config", "rm", "libvirt", "--stack", stack]);
    const projectConverge = measure(stateDir, "pulumi", up, env);
    log(`project converged in ${projectConverge.wallS.toFixed(1)} s`);

    ansible = new AnsibleRunner(lab);
    const noop = { up: [] as Measured[], preview: [] as Measured[], ansible: [] as Measured[], check: [] as Measured[] };
    for (let i = 0; i < options.runs; i++) {
      noop.up.push(measure(stateDir, "pulumi", up, env));
      if (pulumiChanged(noop.up[i].output)) throw new Error(`the no-op up changed something:\n${noop.up[i].output.slice(-2000)}`);
      noop.preview.push(measure(stateDir, "pulumi", preview, env));
      noop.ansible.push(measure(stateDir, "ansible-playbook", ansible.args(false), ansible.env));
      if (ansibleChanged(noop.ansible[i].output) !== 0) throw new Error(`Ansible's run on the converged lab changed something:\n${noop.ansible[i].output.slice(-2000)}`);
      noop.check.push(measure(stateDir, "ansible-playbook", ansible.args(true), ansible.env));
      log(`no-op round ${i + 1}/${options.runs}: up ${noop.up[i].wallS.toFixed(1)} s, preview ${noop.preview[i].wallS.toFixed(1)} s, ansible ${noop.ansible[i].wallS.toFixed(1)} s, --check ${noop.check[i].wallS.toFixed(1)} s`);
    }
    ansible.close();

    log("converge with Ansible from a pristine lab");
    lab = pristineLab(stateDir);
    ansible = new AnsibleRunner(lab);
    const ansibleConverge = measure(stateDir, "ansible-playbook", ansible.args(false), ansible.env);
    log(`Ansible converged in ${ansibleConverge.wallS.toFixed(1)} s`);
    // The lab rebooted during each converge: its sshd log starts over, so logins are not comparable there.
    const noLogins = (m: Measured): RunFigures => ({ ...figures(m), sshLogins: NaN });

    const report = render({
      title: "vfio-host bench: the lab's boot-time job, the project and Ansible side by side",
      lab,
      command: `npm run bench -- --runs ${options.runs}`,
      comparisons: [
        { job: "converge from pristine (one reboot)", project: { command: "pulumi up", runs: [noLogins(projectConverge)] }, ansible: { command: "ansible-playbook", runs: [noLogins(ansibleConverge)] } },
        { job: "no-op run on the converged host", project: { command: "pulumi up", runs: noop.up.map(figures) }, ansible: { command: "ansible-playbook", runs: noop.ansible.map(figures) }, target: 0.15 },
        { job: "preview of the converged host", project: { command: "pulumi preview", runs: noop.preview.map(figures) }, ansible: { command: "ansible-playbook --check", runs: noop.check.map(figures) }, target: 0.15 },
      ],
      converge: convergeSplit(projectConverge),
      noopBreakdown: whereItWent(medianRun(noop.up)),
      previewBreakdown: whereItWent(medianRun(noop.preview)),
    });
    fs.writeFileSync(path.join(benchDir, "results.md"), report);
    console.log(report);
    log("written to bench/results.md");
  } finally {
    ansible?.close();
    spawnSync("pulumi", ["stack", "rm", "--yes", "--force", "--stack", stack], { cwd: projectRoot, env, stdio: "ignore" });
    fs.rmSync(backend, { recursive: true, force: true });
    execFileSync("bash", [labSh, "down"], { env: labEnv(stateDir), stdio: ["ignore", "ignore", "inherit"] });
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  await (options.smoke ? smoke(options) : full(options));
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
