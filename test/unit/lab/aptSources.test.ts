// `lab.sh apt-sources` chooses the apt sources file the lab's Debian bookworm image is built from,
// reading the etc/apt of LAB_APT_ROOT (fixture roots here, never this machine's /etc). The file it
// prints is what mmdebstrap gets and what the image key hashes, so a file that holds only bookworm
// entries must come back as it is: fixtures/deb822 is this machine's file, whose image is cached.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import fc from "fast-check";

const labScript = path.join(__dirname, "../../../scripts/lab/lab.sh");
const fixtures = path.join(__dirname, "fixtures");
const scratch = mkdtempSync(path.join(tmpdir(), "lab-apt-sources-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Chosen {
  status: number | null;
  file: string;
  stderr: string;
  cache: string;
}

function aptSources(root: string, env: Record<string, string> = {}): Chosen {
  const cache = mkdtempSync(path.join(scratch, "cache-"));
  const { LAB_APT_SOURCES: _sources, LAB_STATE: _state, ...inherited } = process.env;
  const result = spawnSync("bash", [labScript, "apt-sources"], {
    encoding: "utf8",
    env: { ...inherited, LAB_APT_ROOT: root, VFIO_HOST_CACHE: cache, LAB_STATE: path.join(cache, "state"), ...env },
  });
  return { status: result.status, file: result.stdout.trim(), stderr: result.stderr, cache };
}

/** A root holding only FILES (paths relative to it). */
function rootWith(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(scratch, "root-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), text);
  }
  return root;
}

const setLabAptSources = "Set LAB_APT_SOURCES to a file naming a Debian bookworm mirror (deb822 .sources or one-line .list)";
const example = /echo '(deb \[signed-by=[^\]]+\] \S+ bookworm main)' >~\/bookworm\.list\n {2}LAB_APT_SOURCES=~\/bookworm\.list npm run lab -- up/;
const ubuntuSentence = "This is Ubuntu";

describe("lab.sh apt-sources", () => {
  it("gives a deb822 file of bookworm entries (this machine's own) to mmdebstrap as it is, so the image key stays", () => {
    const root = path.join(fixtures, "deb822");
    expect(aptSources(root)).toMatchObject({ status: 0, file: `${root}/etc/apt/sources.list.d/debian.sources`, stderr: "" });
  });

  it("takes the bookworm deb lines of a classic sources.list (Debian 12's installer) into a .list copy, without deb-src and comments", () => {
    const chosen = aptSources(path.join(fixtures, "classic"));
    expect(chosen).toMatchObject({ status: 0, file: `${chosen.cache}/lab-apt-sources.list`, stderr: "" });
    expect(readFileSync(chosen.file, "utf8")).toBe(
      [
        "deb http://deb.debian.org/debian/ bookworm main non-free-firmware",
        "deb http://security.debian.org/debian-security bookworm-security main non-free-firmware",
        "deb http://deb.debian.org/debian/ bookworm-updates main non-free-firmware",
        "",
      ].join("\n"),
    );
  });

  it("prefers the deb822 file when both formats name bookworm", () => {
    const root = path.join(fixtures, "both");
    expect(aptSources(root)).toMatchObject({ status: 0, file: `${root}/etc/apt/sources.list.d/debian.sources` });
  });

  it("with no sources (a file apt ignores does not count), says so and shows a LAB_APT_SOURCES that works", () => {
    const root = path.join(fixtures, "none");
    const chosen = aptSources(root);
    expect(chosen).toMatchObject({ status: 1, file: "" });
    expect(chosen.stderr).toContain(`(read: nothing in ${root}/etc/apt; suites: none).\n${setLabAptSources}, e.g.:\n`);
    expect(chosen.stderr).toMatch(example);
    expect(chosen.stderr).not.toContain(ubuntuSentence);
    // The example is a bookworm source by the same rule: as a machine's only file, it is used as it is.
    const line = chosen.stderr.match(example)![1];
    const exampleRoot = rootWith({ "etc/apt/sources.list": `${line}\n` });
    expect(aptSources(exampleRoot)).toMatchObject({ status: 0, file: `${exampleRoot}/etc/apt/sources.list` });
  });

  it.each([
    ["ubuntu-noble", "etc/apt/sources.list.d/ubuntu.sources etc/apt/sources.list", "noble noble-backports noble-security noble-updates"],
    ["ubuntu-jammy", "etc/apt/sources.list", "jammy jammy-security jammy-updates"],
  ])("on Ubuntu (%s), says its mirror cannot build a Debian image and names LAB_APT_SOURCES", (fixture, read, suites) => {
    const root = path.join(fixtures, fixture);
    const chosen = aptSources(root);
    const files = read.split(" ").map((file) => `${root}/${file}`).join(" ");
    expect(chosen).toMatchObject({ status: 1, file: "" });
    expect(chosen.stderr).toContain(
      `[lab] no apt source on this machine names Debian bookworm, which the lab image is built from (read: ${files}; suites: ${suites}).` +
        ` This is Ubuntu: an Ubuntu mirror cannot build the lab's Debian bookworm image.\n` +
        `${setLabAptSources}, e.g. after apt install debian-archive-keyring:\n`,
    );
    expect(chosen.stderr).toMatch(example);
  });

  it("on a Debian of another release, names the suites it found", () => {
    const root = path.join(fixtures, "debian-trixie");
    const chosen = aptSources(root);
    expect(chosen.status).toBe(1);
    expect(chosen.stderr).toContain(`(read: ${root}/etc/apt/sources.list.d/debian.sources; suites: trixie trixie-security trixie-updates).\n`);
    expect(chosen.stderr).not.toContain(ubuntuSentence);
  });

  it("leaves out a disabled stanza and one that mixes bookworm with another release; a kept stanza keeps its comment", () => {
    const keep = "Types: deb\n# a local proxy\nURIs: http://192.0.2.1:3142/debian\nSuites: bookworm\n  bookworm-updates\nComponents: main\n";
    const root = rootWith({
      "etc/apt/sources.list.d/debian.sources": [
        keep,
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nEnabled: no\n",
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm trixie\nComponents: main\n",
      ].join("\n"),
    });
    const chosen = aptSources(root);
    expect(chosen).toMatchObject({ status: 0, file: `${chosen.cache}/lab-apt-sources.sources` });
    expect(readFileSync(chosen.file, "utf8")).toBe(keep);
  });

  it("uses LAB_APT_SOURCES as it is, and names it when it cannot be read", () => {
    const given = path.join(rootWith({ "trixie.list": "deb http://deb.debian.org/debian trixie main\n" }), "trixie.list");
    expect(aptSources(path.join(fixtures, "none"), { LAB_APT_SOURCES: given })).toMatchObject({ status: 0, file: given, stderr: "" });
    const missing = aptSources(path.join(fixtures, "deb822"), { LAB_APT_SOURCES: "/nonexistent/bookworm.sources" });
    expect(missing).toMatchObject({ status: 1, file: "" });
    expect(missing.stderr).toBe("[lab] LAB_APT_SOURCES=/nonexistent/bookworm.sources is not a readable file\n");
  });
});

// One source of each kind, written in either format; `usable` says whether it is a Debian bookworm entry.
interface Source {
  type: string;
  uri: string;
  suite: string;
  components: string;
  signedBy?: string;
  usable: boolean;
}
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
const sources: Source[] = [
  { type: "deb", uri: "http://deb.debian.org/debian", suite: "bookworm", components: "main", usable: true },
  { type: "deb", uri: "http://security.debian.org/debian-security", suite: "bookworm-security", components: "main non-free-firmware", signedBy: keyring, usable: true },
  { type: "deb", uri: "http://192.0.2.1:3142/debian", suite: "bookworm-updates", components: "main contrib", usable: true },
  { type: "deb-src", uri: "http://deb.debian.org/debian", suite: "bookworm", components: "main", usable: false },
  { type: "deb", uri: "cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 NETINST]/", suite: "bookworm", components: "main", usable: false },
  { type: "deb", uri: "http://deb.debian.org/debian", suite: "trixie", components: "main", usable: false },
  { type: "deb", uri: "https://download.docker.com/linux/debian", suite: "bookworm", components: "stable", usable: false },
  { type: "deb", uri: "https://packages.cloud.google.com/apt", suite: "cloud-sdk-bookworm", components: "main", usable: false },
  { type: "deb", uri: "http://archive.ubuntu.com/ubuntu", suite: "noble", components: "main universe", usable: false },
];

type Format = "deb822" | "one-line";
const fileName: Record<Format, string> = { deb822: "etc/apt/sources.list.d/debian.sources", "one-line": "etc/apt/sources.list" };

/** The entry's own text; a note is a comment line inside a deb822 stanza, a comment line before a one-line entry. */
function entryText(source: Source, format: Format, note: boolean): string {
  if (format === "one-line") {
    return `${source.type}${source.signedBy ? ` [signed-by=${source.signedBy}]` : ""} ${source.uri} ${source.suite} ${source.components}\n`;
  }
  const signedBy = source.signedBy ? `Signed-By: ${source.signedBy}\n` : "";
  return `Types: ${source.type}\n${note ? "# note\n" : ""}URIs: ${source.uri}\nSuites: ${source.suite}\nComponents: ${source.components}\n${signedBy}`;
}

function fileText(entries: { source: Source; note: boolean; gap: boolean }[], format: Format): string {
  if (format === "one-line") return entries.map(({ source, note }) => `${note ? "# note\n" : ""}${entryText(source, format, note)}`).join("");
  return entries.map(({ source, note, gap }) => entryText(source, format, note) + (gap ? "\n" : "")).join("\n");
}

describe("lab.sh apt-sources on any mix of sources", () => {
  it.each<Format>(["deb822", "one-line"])(
    "%s: the file itself when every entry is bookworm, else a copy of exactly the bookworm entries that is itself taken as it is, else an error",
    (format) => {
      const entry = fc.record({ source: fc.constantFrom(...sources), note: fc.boolean(), gap: fc.boolean() });
      fc.assert(
        fc.property(fc.array(entry, { minLength: 1, maxLength: 6 }), (entries) => {
          const root = rootWith({ [fileName[format]]: fileText(entries, format) });
          const chosen = aptSources(root);
          const usable = entries.filter(({ source }) => source.usable);
          if (usable.length === 0) {
            expect(chosen.status).toBe(1);
            expect(chosen.stderr).toContain(setLabAptSources);
          } else if (usable.length === entries.length) {
            expect(chosen).toMatchObject({ status: 0, file: `${root}/${fileName[format]}` });
          } else {
            const copy = `${chosen.cache}/lab-apt-sources.${format === "deb822" ? "sources" : "list"}`;
            expect(chosen).toMatchObject({ status: 0, file: copy });
            const separator = format === "deb822" ? "\n" : "";
            expect(readFileSync(copy, "utf8")).toBe(usable.map(({ source, note }) => entryText(source, format, note)).join(separator));
            const again = rootWith({ [fileName[format]]: readFileSync(copy, "utf8") });
            expect(aptSources(again).file).toBe(`${again}/${fileName[format]}`);
          }
          rmSync(root, { recursive: true });
          rmSync(chosen.cache, { recursive: true });
        }),
        { numRuns: 25 },
      );
    },
    60_000,
  );
});
