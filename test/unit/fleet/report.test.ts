// What the fleet prints (scripts/fleet/report.ts) and what it reads from a run's engine events
// (scripts/fleet/events.ts): the summary table, the change counts, the failure a run is reported
// with, the terminal's rewritten block, and the reboot a preview announces.
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { emptyObservation, observe, rebootReason, RunObservation } from "../../../scripts/fleet/events";
import { cliErrorLines, failureText, formatChanges, redrawBlock, StackReport, statusLine, summaryTable } from "../../../scripts/fleet/report";

const URN = (name: string, type: string) => `urn:pulumi:host-01::vfio-host-fleet::vfio-host:index:VfioHost$${type}::${name}`;
const REBOOT_TYPE = "pulumi-nodejs:dynamic/vfio-host:HostReboot";
const CMDLINE_TYPE = "pulumi-nodejs:dynamic/vfio-host:KernelCmdline";
const event = (fields: Partial<EngineEvent>): EngineEvent => ({ sequence: 0, timestamp: 0, ...fields });
const pre = (op: string, name: string, type: string, diffs?: string[]) =>
  event({ resourcePreEvent: { metadata: { op, urn: URN(name, type), type, provider: "", diffs } as never } });
const fold = (events: EngineEvent[]) => events.reduce(observe, emptyObservation());

describe("observe", () => {
  it("takes host[:port] from the prelude's config, the port only when it is not 22", () => {
    expect(fold([event({ preludeEvent: { config: { "vfio-host:host": "192.0.2.10", "vfio-host:port": "22" } } })]).host).toBe("192.0.2.10");
    expect(fold([event({ preludeEvent: { config: { "vfio-host:host": "127.0.0.1", "vfio-host:port": "30609" } } })]).host).toBe("127.0.0.1:30609");
  });

  it("marks the run rebooting when its HostReboot is created, updated or replaced, with the inputs that changed", () => {
    for (const op of ["create", "update", "replace", "create-replacement"]) {
      expect(fold([pre(op, "host-01-reboot", REBOOT_TYPE, ["triggers"])]).reboot).toEqual({ resource: "host-01-reboot", op, diffs: ["triggers"] });
    }
  });

  it("does not for a HostReboot left alone or deleted (destroy never reboots), nor for the other resources", () => {
    for (const events of [[pre("same", "host-01-reboot", REBOOT_TYPE)], [pre("delete", "host-01-reboot", REBOOT_TYPE)], [pre("update", "host-01-cmdline", CMDLINE_TYPE, ["args"])]]) {
      expect(fold(events).reboot).toBeUndefined();
    }
  });

  it("follows the step in flight, and ignores providers and unchanged resources", () => {
    const seen = fold([pre("update", "host-01-cmdline", CMDLINE_TYPE)]);
    expect(seen.current).toBe("update host-01-cmdline");
    expect(observe(seen, pre("same", "host-01-vfio", "pulumi-nodejs:dynamic/vfio-host:VfioBinding"))).toBe(seen);
    expect(observe(seen, pre("create", "default", "pulumi:providers:pulumi-nodejs"))).toBe(seen);
    expect(observe(seen, event({ resOutputsEvent: { metadata: {} as never } })).current).toBeUndefined();
  });

  it("keeps the summary's counts and the error diagnostics, colour markup taken out", () => {
    const seen = fold([
      event({ diagnosticEvent: { urn: URN("host-01-cmdline", CMDLINE_TYPE), message: "<{%fg 1%}>root@10.0.0.2: host key mismatch<{%reset%}>\n", color: "raw", severity: "error" } }),
      event({ diagnosticEvent: { message: "\x1b[31mupdate failed\x1b[0m", color: "raw", severity: "error" } }),
      event({ diagnosticEvent: { message: "a warning", color: "raw", severity: "warning" } }),
      event({ summaryEvent: { maybeCorrupt: false, durationSeconds: 3, resourceChanges: { create: 1, same: 4 }, policyPacks: {} } }),
    ]);
    expect(seen.errors).toEqual([{ message: "root@10.0.0.2: host key mismatch", resource: "host-01-cmdline" }, { message: "update failed", resource: undefined }]);
    expect(seen.changes).toEqual({ create: 1, same: 4 });
  });
});

describe("rebootReason", () => {
  it("says which HostReboot would run and which of its inputs changed", () => {
    expect(rebootReason({ resource: "host-01-reboot", op: "update", diffs: ["triggers", "expectArgs"] })).toBe("host-01-reboot would be updated (triggers, expectArgs changed)");
    expect(rebootReason({ resource: "host-01-reboot", op: "create", diffs: [] })).toBe("host-01-reboot would be created");
  });
});

describe("formatChanges", () => {
  it("counts creates, updates and deletes, and replacements apart", () => {
    expect(formatChanges({ create: 1, update: 2, same: 3 })).toBe("+1 ~2 -0");
    expect(formatChanges({ delete: 5 })).toBe("+0 ~0 -5");
    expect(formatChanges({ replace: 1, "create-replacement": 1 })).toBe("+0 ~0 -0 +-2");
    expect(formatChanges(undefined)).toBe("-");
  });
});

describe("summaryTable", () => {
  const reports: StackReport[] = [
    { stack: "host-01", host: "10.0.0.2", state: "ok", result: "ok", changes: { create: 5 }, reboot: false, ms: 6800 },
    { stack: "nas", host: "192.0.2.10:2222", state: "ok", result: "ok", changes: { update: 2, same: 4 }, reboot: true, ms: 95_250 },
    { stack: "old-box", host: "192.0.2.11", state: "failed", result: "failed", reboot: false, ms: 1200, error: "old-box-cmdline: host key mismatch\n  pinned SHA256:a" },
    { stack: "never", state: "queued", reboot: false, ms: 0 },
  ];

  it("lists every stack with its host, result, changes, reboot and duration, then each failure in full", () => {
    expect(summaryTable(reports)).toBe(
      [
        "STACK    HOST             RESULT   CHANGES   REBOOT  DURATION",
        "host-01  10.0.0.2         ok       +5 ~0 -0  no      6.8s",
        "nas      192.0.2.10:2222  ok       +0 ~2 -0  yes     95.3s",
        "old-box  192.0.2.11       failed   -         no      1.2s",
        "never    -                not run  -         no      0.0s",
        "4 stacks: 2 ok, 2 failed",
        "old-box (192.0.2.11) failed:",
        "  old-box-cmdline: host key mismatch",
        "    pinned SHA256:a",
        "never failed:",
        "  it did not run",
      ].join("\n"),
    );
  });

  it("shows the step in flight on a status line", () => {
    expect(statusLine({ ...reports[1], state: "up", step: "update nas-cmdline" })).toBe("nas (192.0.2.10:2222): up, update nas-cmdline");
    expect(statusLine(reports[3])).toBe("never: queued");
  });
});

describe("failureText", () => {
  const none: RunObservation = emptyObservation();

  it("is the first error a resource reported, named by the resource", () => {
    const seen = { ...none, errors: [{ message: "update failed" }, { message: "host key mismatch", resource: "host-01-cmdline" }, { message: "later", resource: "host-01-vfio" }] };
    expect(failureText(seen, new Error("code: 255"))).toBe("host-01-cmdline: host key mismatch");
  });

  it("is the CLI's error lines when the engine said nothing, as with a stack lock held elsewhere", () => {
    // The Automation API's CommandError message, with the DIY backend's lock refusal (pkg/backend/diy/lock.go) on stderr.
    const stderr = [
      "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.",
      "  postgres://****:****@127.0.0.1:5432/fleet/.pulumi/locks/organization/vfio-host-fleet/host-01/2b1c.json: created by root@ci (pid 4242) at 2026-12-01T14:00:00Z",
      "",
    ].join("\n");
    const error = new Error(`code: 255\n stdout: \n stderr: ${stderr}\n err?: Error: exit 255\n`);
    expect(failureText(none, error)).toBe(stderr.trimEnd());
  });

  it("is the error's first line when neither said anything", () => {
    expect(failureText(none, new Error("spawn pulumi ENOENT\n  at x"))).toBe("spawn pulumi ENOENT");
  });
});

describe("cliErrorLines", () => {
  it("keeps each error line with its indented continuation and drops the rest", () => {
    expect(cliErrorLines("Previewing update (host-01):\nerror: one\n  detail\nother text\nerror: two\n")).toBe("error: one\n  detail\nerror: two");
  });
});

describe("redrawBlock", () => {
  it("rewrites the block of lines in place: up to its first line, each line cleared, long lines cut to the terminal", () => {
    expect(redrawBlock(["a: ok", "b: previewing"], 0, 80)).toBe("\x1b[2Ka: ok\n\x1b[2Kb: previewing\n");
    expect(redrawBlock(["a: ok", "b: up"], 2, 80)).toBe("\x1b[2F\x1b[2Ka: ok\n\x1b[2Kb: up\n");
    expect(redrawBlock(["0123456789"], 1, 8)).toBe("\x1b[1F\x1b[2K012345…\n");
  });
});
