// HostPackages facts in one round trip: package manager and init system, which of the requested
// packages are installed, each service's state and record (serviceRecordPath), each module's state,
// and the modules file.
// The names travel as arguments ("pkg:NAME", "svc:NAME", "mod:NAME"), never inside the script.
import { normalizeModuleName } from "../kernel/modules";
import type { RemoteHost } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import { HostPackagesFacts, HostPackagesInputs, InitSystem, MODULES_FILE, ModuleFact, PackageManager, ServiceFact, serviceRecordPath } from "./plan";

/** Leaves "$@" holding the names of the arguments that carry `prefix`. */
const select = (prefix: string) => `n=$#; for a; do case $a in ${prefix}:*) set -- "$@" "\${a#${prefix}:}";; esac; done; shift $n`;

const SYSTEMD = "[ -d /run/systemd/system ]";

const snippets = {
  manager: "command -v dpkg-query >/dev/null && command -v apt-get >/dev/null && echo apt; command -v apk >/dev/null && echo apk",
  // systemd's own test for "booted with systemd" (sd_booted(3)).
  init: `if ${SYSTEMD}; then echo systemd; elif command -v rc-service >/dev/null; then echo openrc; fi`,
  release: "uname -r",
  dpkg: `${select("pkg")}; [ $# -gt 0 ] && dpkg-query -W -f='\${Package}\\t\${db:Status-Abbrev}\\n' "$@"`,
  apk: `${select("pkg")}; [ $# -gt 0 ] && apk info -e "$@"`,
  aptLists: 'for f in /var/lib/apt/lists/*_Packages*; do [ -e "$f" ] && echo yes; break; done',
  // TriggeredBy: a socket-activated service (libvirtd on Debian 12) is idle until a client comes.
  systemd: `${SYSTEMD} || exit 0; ${select("svc")}; for u; do printf 'unit=%s\\n' "$u"
systemctl show --property=LoadState,ActiveState,UnitFileState -- "$u"
for t in $(systemctl show --value --property=TriggeredBy -- "$u"); do printf 'trigger=%s\\n' "$(systemctl show --value --property=ActiveState -- "$t")"; done; done`,
  // A service is enabled when it is in any runlevel (default, boot, sysinit...).
  openrc: `${SYSTEMD} && exit 0; command -v rc-service >/dev/null || exit 0; ${select("svc")}; for s; do e=0; for r in /etc/runlevels/*/"$s"; do [ -e "$r" ] && e=1; done
printf '%s %s %s %s\\n' "$s" "$([ -e "/etc/init.d/$s" ] && echo 1 || echo 0)" "$e" "$(rc-service "$s" status >/dev/null 2>&1 && echo 1 || echo 0)"; done`,
  // The names cannot hold a "/" (serviceName), so each record is a file of that one directory.
  records: `${select("svc")}; for s; do printf '%s\\t%s\\n' "$s" "$(head -n 1 -- "${serviceRecordPath("")}$s" 2>/dev/null)"; done`,
  modinfo: `${select("mod")}; for m; do printf '%s\\t%s\\t%s\\n' "$m" "$(modinfo -F filename -- "$m" 2>/dev/null | head -n 1)" "$([ -d "/sys/module/$m" ] && echo 1)"; done`,
  loaded: "cut -d' ' -f1 /proc/modules",
  systemdModulesFile: catFile(MODULES_FILE.systemd),
  openrcModulesFile: catFile(MODULES_FILE.openrc),
};

/** `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n'`: installed is "ii" (rc = only config files left). */
export function parseDpkgQuery(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.split("\t"))
    .filter(([name, status]) => name && status?.startsWith("ii"))
    .map(([name]) => name);
}

/** `apk info -e NAME...` prints the installed ones, one per line. */
export function parseApkInfo(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

// is-enabled states that mean "nothing to enable": enabling a static or indirect unit changes
// nothing, so counting them as disabled would plan `enable` on every run (systemctl(1) is-enabled).
const NOT_ENABLED = new Set(["disabled", "linked", "linked-runtime", ""]);
const RUNNING = new Set(["active", "activating", "reloading", "refreshing"]);

/** The `unit=`/`systemctl show`/`trigger=` blocks of the systemd snippet. */
export function parseSystemdServices(text: string): Record<string, ServiceFact> {
  const services: Record<string, ServiceFact> = {};
  let unit: string | undefined;
  let fields: Record<string, string> = {};
  let triggers: string[] = [];
  const flush = () => {
    if (unit === undefined) return;
    const state = fields.UnitFileState ?? "";
    services[unit] = {
      exists: fields.LoadState !== undefined && fields.LoadState !== "not-found",
      masked: fields.LoadState === "masked" || state.startsWith("masked"),
      enabled: !NOT_ENABLED.has(state),
      running: RUNNING.has(fields.ActiveState ?? "") || triggers.some((t) => RUNNING.has(t)),
    };
  };
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const [key, value] = [line.slice(0, eq), line.slice(eq + 1)];
    if (key === "unit") {
      flush();
      [unit, fields, triggers] = [value, {}, []];
    } else if (key === "trigger") triggers.push(value);
    else fields[key] = value;
  }
  flush();
  return services;
}

/** "NAME EXISTS ENABLED STARTED" lines (1/0) of the OpenRC snippet. */
export function parseOpenrcServices(text: string): Record<string, ServiceFact> {
  const services: Record<string, ServiceFact> = {};
  for (const line of text.split("\n")) {
    const [name, exists, enabled, running] = line.trim().split(" ");
    if (running === undefined) continue;
    services[name] = { exists: exists === "1", masked: false, enabled: enabled === "1", running: running === "1" };
  }
  return services;
}

/** "NAME\tSTACK" lines of the records snippet: the stack each service's record names, where there is one. */
export function parseServiceRecords(text: string): Record<string, string> {
  const records: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const [name, stack] = line.split("\t");
    if (name && stack) records[name] = stack;
  }
  return records;
}

/**
 * "NAME\tFILENAME\tSYSFS" lines (modinfo -F filename; /sys/module/NAME exists) and the loaded
 * modules of /proc/modules. Keys use the kernel's spelling (underscores).
 */
export function parseModuleFacts(modinfo: string, loaded: string): Record<string, ModuleFact> {
  const loadedNames = new Set(loaded.split("\n").map((l) => l.trim()).filter(Boolean));
  const modules: Record<string, ModuleFact> = {};
  for (const line of modinfo.split("\n")) {
    const [raw, filename, sysfs] = line.split("\t");
    if (!raw || filename === undefined) continue;
    const name = normalizeModuleName(raw);
    // kmod prints "(builtin)"; a built-in module with parameters also has a /sys/module directory.
    modules[name] = loadedNames.has(name)
      ? "loaded"
      : filename === "(builtin)" || (filename === "" && sysfs === "1")
        ? "builtin"
        : filename !== ""
          ? "available"
          : "unknown";
  }
  return modules;
}

export async function readHostPackagesFacts(host: RemoteHost, inputs: HostPackagesInputs): Promise<HostPackagesFacts> {
  const args = [
    ...inputs.packages.map((p) => `pkg:${p}`),
    ...inputs.services.map((s) => `svc:${s}`),
    // The kernel's spelling, as /sys/module has it.
    ...inputs.modules.map((m) => `mod:${normalizeModuleName(m)}`),
  ];
  const s = await readSections(host, snippets, { args });
  const manager = s.manager.split("\n")[0].trim() as PackageManager | "";
  const init = s.init.trim() as InitSystem | "";
  return {
    manager: manager || undefined,
    init: init || undefined,
    kernelRelease: s.release.trim(),
    installed: manager === "apk" ? parseApkInfo(s.apk) : parseDpkgQuery(s.dpkg),
    aptListsPresent: s.aptLists.trim() === "yes",
    services: init === "openrc" ? parseOpenrcServices(s.openrc) : parseSystemdServices(s.systemd),
    modules: parseModuleFacts(s.modinfo, s.loaded),
    modulesFile: fileFromSection(init === "openrc" ? s.openrcModulesFile : s.systemdModulesFile),
    serviceRecords: parseServiceRecords(s.records),
  };
}
