// Editing one variable of a file that a shell sources (/etc/default/grub, /etc/update-extlinux.conf,
// /etc/mkinitfs/mkinitfs.conf) without touching any other byte. The last plain assignment wins, as
// when the shell runs the file; values the shell computes (expansions, assignments inside
// if/case/functions or after && and ||) are refused rather than guessed.
import { TokenOwnership, TokenRequest, TokenSyntax, adoptTokens, describeTokenChanges, planTokens, revertTokenText } from "./tokenList";

export type ShellQuoting = "double" | "single" | "bare";

export interface ShellVariableSpec {
  readonly name: string;
  /** The file's path on the host, for messages. */
  readonly source: string;
  /** A good assignment to show in messages, e.g. `GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"`. */
  readonly example: string;
  /** When set, a file without the variable is refused with this message instead of getting a new line. */
  readonly requiredMessage?: string;
}

export interface ShellAssignment {
  readonly name: string;
  /** 1-based line of the assignment. */
  readonly line: number;
  readonly start: number;
  readonly valueStart: number;
  readonly valueEnd: number;
  /** The value as written, quotes included. */
  readonly raw: string;
  /** Inside if/case/loops/functions or after && / ||: whether it runs is decided at run time. */
  readonly conditional: boolean;
}

const RESERVED_OPEN = new Set(["if", "while", "until", "for", "case", "{"]);
const RESERVED_CLOSE = new Set(["fi", "done", "esac", "}"]);
const RESERVED_CONTINUE = new Set(["then", "do", "else", "elif", "!"]);
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_]*)=/;

function syntaxError(source: string, text: string, at: number, what: string): Error {
  return new Error(`${source} line ${lineOf(text, at)}: ${what} never ends; fix the file so that \`sh -n ${source}\` accepts it`);
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text[i] === "\n") line++;
  return line;
}

/** Nested parts of a shell word, each scanned to its closing character (`'` has no nesting and is handled apart). */
type Nesting = "word" | "double" | "backquote" | "parens" | "braces";
const CLOSER: Record<Exclude<Nesting, "word">, string> = { double: '"', backquote: "`", parens: ")", braces: "}" };
const UNCLOSED: Record<Exclude<Nesting, "word">, string> = {
  double: "a double-quoted string",
  backquote: "a `command` substitution",
  parens: "a $( ) substitution",
  braces: "a ${ } expansion",
};

/** The index just past the escape, quote or substitution opening at `at`; undefined when none opens there. */
function skipPart(text: string, at: number, source: string, inside: Nesting): number | undefined {
  const c = text[at];
  if (c === "\\") return at + 2;
  if (inside === "backquote") return undefined;
  if (c === "$" && text[at + 1] === "(") return skipTo(text, at + 2, "parens", source);
  if (c === "$" && text[at + 1] === "{") return skipTo(text, at + 2, "braces", source);
  if (c === "`") return skipTo(text, at + 1, "backquote", source);
  if (inside === "double") return undefined;
  if (c === '"') return skipTo(text, at + 1, "double", source);
  if (c !== "'") return undefined;
  const close = text.indexOf("'", at + 1);
  if (close < 0) throw syntaxError(source, text, at, "a single-quoted string");
  return close + 1;
}

function skipTo(text: string, from: number, nesting: Exclude<Nesting, "word">, source: string): number {
  let depth = 0;
  for (let j = from; j < text.length; ) {
    const c = text[j];
    if (c === CLOSER[nesting] && depth === 0) return j + 1;
    if (nesting === "parens" && c === "(") depth++;
    if (nesting === "parens" && c === ")") depth--;
    j = skipPart(text, j, source, nesting) ?? j + 1;
  }
  throw syntaxError(source, text, from - 1, UNCLOSED[nesting]);
}

function wordEnd(text: string, from: number, source: string): number {
  let j = from;
  while (j < text.length && !" \t\n;&|()".includes(text[j])) j = skipPart(text, j, source, "word") ?? j + 1;
  return Math.min(j, text.length);
}

/**
 * Every assignment that persists in the sourcing shell (not `VAR=x command` environment prefixes).
 * Here-documents are not understood; none of the files this project edits uses them.
 */
export function findShellAssignments(text: string, source: string): ShellAssignment[] {
  const found: ShellAssignment[] = [];
  let pending: ShellAssignment[] = [];
  let phase: "start" | "assign" | "export" | "args" = "start";
  let depth = 0;
  let chained = false;
  const endCommand = () => {
    found.push(...pending);
    pending = [];
    phase = "start";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === " " || c === "\t") {
      i++;
    } else if (c === "\\" && text[i + 1] === "\n") {
      i += 2;
    } else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if ("\n;&|()".includes(c)) {
      endCommand();
      chained = c === "&" || c === "|" ? true : c === "\n" || c === ";" ? false : chained;
      i++;
    } else {
      const end = wordEnd(text, i, source);
      const word = text.slice(i, end);
      const assignment = ASSIGNMENT.exec(word);
      if (assignment && phase !== "args") {
        pending.push({
          name: assignment[1],
          line: lineOf(text, i),
          start: i,
          valueStart: i + assignment[0].length,
          valueEnd: end,
          raw: word.slice(assignment[0].length),
          conditional: depth > 0 || chained,
        });
        if (phase === "start") phase = "assign";
      } else if (phase === "start" && RESERVED_OPEN.has(word)) {
        depth++;
        phase = word === "for" || word === "case" ? "args" : "start";
      } else if (phase === "start" && RESERVED_CLOSE.has(word)) {
        depth = Math.max(0, depth - 1);
        phase = "args";
      } else if (phase === "start" && RESERVED_CONTINUE.has(word)) {
        phase = "start";
      } else if ((phase === "start" || phase === "assign") && (word === "export" || word === "readonly")) {
        phase = "export";
      } else if (phase !== "export") {
        // A command: assignments before it only set its environment.
        pending = [];
        phase = "args";
      }
      i = end;
    }
  }
  endCommand();
  return found;
}

/** The shell's value of a word, or undefined when the shell would expand something in it. */
function decodeShellWord(raw: string): string | undefined {
  let value = "";
  let j = 0;
  while (j < raw.length) {
    const c = raw[j];
    if (c === "\\") {
      if (raw[j + 1] !== "\n") value += raw[j + 1] ?? "";
      j += 2;
    } else if (c === "'") {
      const close = raw.indexOf("'", j + 1);
      if (close < 0) return undefined;
      value += raw.slice(j + 1, close);
      j = close + 1;
    } else if (c === '"') {
      j++;
      while (j < raw.length && raw[j] !== '"') {
        const d = raw[j];
        if (d === "\\" && '$`"\\\n'.includes(raw[j + 1])) {
          if (raw[j + 1] !== "\n") value += raw[j + 1];
          j += 2;
        } else if (d === "$" || d === "`") {
          return undefined;
        } else {
          value += d;
          j++;
        }
      }
      j++;
    } else if (c === "$" || c === "`") {
      return undefined;
    } else {
      value += c;
      j++;
    }
  }
  return value;
}

const BARE_SAFE = /^[A-Za-z0-9_@%+=:,./-]*$/;

/** The value written as `prefer` asks when the shell reads it back unchanged that way, else double-quoted. */
export function encodeShellValue(value: string, prefer: ShellQuoting): string {
  if (prefer === "bare" && BARE_SAFE.test(value)) return value;
  if (prefer === "single" && !value.includes("'")) return `'${value}'`;
  return `"${value.replace(/[\\"$`]/g, "\\$&")}"`;
}

function quotingOf(raw: string): ShellQuoting {
  return raw.startsWith('"') ? "double" : raw.startsWith("'") ? "single" : "bare";
}

export interface ShellValue {
  readonly assignment: ShellAssignment;
  /** undefined when the shell computes it ($VAR, `cmd`, $(cmd)). */
  readonly value: string | undefined;
  readonly quoting: ShellQuoting;
  /** Whether re-encoding the value gives back the same bytes, so it can be rewritten in place. */
  readonly rewritable: boolean;
}

/** The assignment that wins, or undefined when the file never sets the variable. */
export function readShellVariable(text: string, spec: ShellVariableSpec): ShellValue | undefined {
  const assignments = findShellAssignments(text, spec.source).filter((a) => a.name === spec.name);
  const conditional = assignments.find((a) => a.conditional);
  if (conditional) {
    throw new Error(
      `${spec.source} line ${conditional.line}: ${spec.name} is assigned inside a condition, loop or function, ` +
        `so which value wins is only known when the shell runs it; move it to a line of its own outside the block, e.g. ${spec.example}`,
    );
  }
  const assignment = assignments.at(-1);
  if (!assignment) return undefined;
  const value = decodeShellWord(assignment.raw);
  const quoting = quotingOf(assignment.raw);
  return { assignment, value, quoting, rewritable: value !== undefined && encodeShellValue(value, quoting) === assignment.raw };
}

function unreadable(spec: ShellVariableSpec, found: ShellValue): Error {
  const { line, raw } = found.assignment;
  return new Error(
    `${spec.source} line ${line}: ${spec.name}=${raw} expands $ or \` when the shell reads it, so its value cannot be ` +
      `edited safely; write the value out in one quoted string, e.g. ${spec.example}`,
  );
}

function unrewritable(spec: ShellVariableSpec, found: ShellValue): Error {
  const { line, raw } = found.assignment;
  return new Error(
    `${spec.source} line ${line}: ${spec.name}=${raw} uses quoting that cannot be rewritten without changing ` +
      `other bytes (several quoted parts, or backslashes the shell drops); write it as one quoted string, e.g. ${spec.example}`,
  );
}

/** The value the variable has for the shell; "" when unset. Throws when the shell would compute it. */
export function shellVariableValue(text: string, spec: ShellVariableSpec): string {
  const found = readShellVariable(text, spec);
  if (!found) return "";
  if (found.value === undefined) throw unreadable(spec, found);
  return found.value;
}

export interface ShellListOwnership {
  readonly tokens: TokenOwnership;
  /** How the value was quoted before we touched it; "absent" when we added the assignment line. */
  readonly quoting: ShellQuoting | "absent";
  /** We added a newline before our line because the file did not end with one. */
  readonly addedNewline?: boolean;
}

export interface ShellListPlan {
  readonly text: string;
  readonly owned: ShellListOwnership;
  /** Human-readable, for `pulumi preview`: "+ iommu=pt", "intel_iommu=off -> intel_iommu=on". */
  readonly changes: readonly string[];
}

function replaceSpan(text: string, start: number, end: number, by: string): string {
  return text.slice(0, start) + by + text.slice(end);
}

function applyShellList(
  text: string,
  spec: ShellVariableSpec,
  request: TokenRequest,
  syntax: TokenSyntax,
): { text: string; owned: ShellListOwnership } {
  const found = readShellVariable(text, spec);
  if (!found) {
    if (spec.requiredMessage !== undefined) throw new Error(spec.requiredMessage);
    const plan = planTokens("", request, syntax);
    if (plan.text === "") return { text, owned: { tokens: plan.owned, quoting: "absent" } };
    const addedNewline = text !== "" && !text.endsWith("\n");
    const line = `${spec.name}=${encodeShellValue(plan.text, "bare")}\n`;
    return { text: text + (addedNewline ? "\n" : "") + line, owned: { tokens: plan.owned, quoting: "absent", addedNewline } };
  }
  if (found.value === undefined) throw unreadable(spec, found);
  const plan = planTokens(found.value, request, syntax);
  const owned = { tokens: plan.owned, quoting: found.quoting };
  if (plan.text === found.value) return { text, owned };
  if (!found.rewritable) throw unrewritable(spec, found);
  const { valueStart, valueEnd } = found.assignment;
  return { text: replaceSpan(text, valueStart, valueEnd, encodeShellValue(plan.text, found.quoting)), owned };
}

/** Gives back the file as it was before the plan that returned `owned`. */
export function revertShellList(text: string, spec: ShellVariableSpec, owned: ShellListOwnership, syntax: TokenSyntax): string {
  const found = readShellVariable(text, spec);
  if (!found) return text;
  if (found.value === undefined) throw unreadable(spec, found);
  const value = revertTokenText(found.value, owned.tokens, syntax);
  if (value === found.value) return text;
  if (!found.rewritable) throw unrewritable(spec, found);
  const { start, valueStart, valueEnd } = found.assignment;
  const wholeLine = (start === 0 || text[start - 1] === "\n") && (valueEnd === text.length || text[valueEnd] === "\n");
  if (owned.quoting === "absent" && value === "" && wholeLine) {
    const atEnd = valueEnd + 1 >= text.length;
    const from = owned.addedNewline && atEnd && start > 0 ? start - 1 : start;
    return text.slice(0, from) + text.slice(valueEnd + 1);
  }
  const quoting = owned.quoting === "absent" ? "bare" : owned.quoting;
  return replaceSpan(text, valueStart, valueEnd, encodeShellValue(value, quoting));
}

/**
 * adoptTokens for the variable's value: `backup` is the file before our first write. The quoting
 * (or the absence of the line) comes from the backup, so a revert gives back its bytes.
 */
export function adoptShellList(
  text: string,
  backup: string,
  spec: ShellVariableSpec,
  request: TokenRequest,
  syntax: TokenSyntax,
): ShellListOwnership | undefined {
  let original: ShellValue | undefined;
  try {
    original = readShellVariable(backup, spec);
  } catch {
    return undefined; // a backup the shell cannot settle explains nothing; the file itself is checked by the plan
  }
  const current = readShellVariable(text, spec);
  if (current?.value === undefined || (original && original.value === undefined)) return undefined;
  const tokens = adoptTokens(original?.value ?? "", current.value, request, syntax);
  if (!tokens) return undefined;
  if (original) return { tokens, quoting: original.quoting };
  return { tokens, quoting: "absent", addedNewline: backup !== "" && !backup.endsWith("\n") };
}

/**
 * Edits the token list held by one shell variable: reverts `previouslyOwned` first, then applies
 * the request, changing only the bytes of the value (or appending one line when the file lacks it).
 * Without `previouslyOwned` but with `backup`, our earlier changes are recognised from it.
 */
export function planShellList(
  text: string,
  spec: ShellVariableSpec,
  request: TokenRequest & { readonly previouslyOwned?: ShellListOwnership; readonly backup?: string },
  syntax: TokenSyntax,
): ShellListPlan {
  const wanted = { ensure: request.ensure, remove: request.remove };
  const previouslyOwned =
    request.previouslyOwned ?? (request.backup !== undefined ? adoptShellList(text, request.backup, spec, wanted, syntax) : undefined);
  const base = previouslyOwned ? revertShellList(text, spec, previouslyOwned, syntax) : text;
  const plan = applyShellList(base, spec, wanted, syntax);
  return { ...plan, changes: describeShellListChange(text, plan.text, spec, syntax) };
}

/** What changes in the variable's value between two versions of the file, from the host's view. */
export function describeShellListChange(before: string, after: string, spec: ShellVariableSpec, syntax: TokenSyntax): string[] {
  return describeTokenChanges(syntax.parse(shellVariableValue(before, spec)), syntax.parse(shellVariableValue(after, spec)), syntax);
}
