// A list of tokens that keeps the exact bytes between them, so an edit touches only the tokens it
// means to and a revert gives back the original bytes. Kernel command lines, the `modules=` comma
// list of update-extlinux.conf, mkinitfs `features=` and the lines of module list files
// (/etc/initramfs-tools/modules, /etc/modules, modules-load.d) all go through it; each supplies a
// TokenSyntax.

export interface TokenList {
  readonly leading: string;
  readonly tokens: readonly string[];
  /** separators[i] sits between tokens[i] and tokens[i + 1]. */
  readonly separators: readonly string[];
  readonly trailing: string;
}

export interface TokenSyntax {
  parse(text: string): TokenList;
  /** What an insertion puts between two tokens. */
  readonly separator: string;
  /** Tokens with the same key set the same thing; undefined for tokens that set nothing (comments). */
  key(token: string): string | undefined;
  /** Whether `token` already gives what `wanted` asks for (same key assumed). */
  satisfies(token: string, wanted: string): boolean;
  /** Tokens at or after this index are not ours to read or edit; insertions go here. */
  end(list: TokenList): number;
}

/** What an apply changed, kept in the resource's state so a later revert undoes exactly that. */
export interface TokenOwnership {
  readonly added: readonly string[];
  readonly replaced: readonly ReplacedToken[];
  readonly removed: readonly RemovedToken[];
}

export interface ReplacedToken {
  readonly key: string;
  /** Which token with this key, counting from 0 in the editable region. */
  readonly occurrence: number;
  readonly original: string;
  readonly replacement: string;
}

export interface RemovedToken {
  readonly index: number;
  readonly token: string;
  /** The separator removed with it ("" when it was the only token). */
  readonly separator: string;
  /** When it was the only token: the whitespace that followed it. */
  readonly trailing?: string;
}

export interface TokenRequest {
  /** Tokens that must be in effect: added at the end when their key is absent, replacing other values of their key. */
  readonly ensure: readonly string[];
  /** A bare key removes every token with that key; `key=value` removes only that value. */
  readonly remove?: readonly string[];
}

function formatTokens(list: TokenList): string {
  let text = list.leading;
  list.tokens.forEach((token, i) => {
    text += token + (list.separators[i] ?? "");
  });
  return text + list.trailing;
}

function insertAt(list: TokenList, index: number, token: string, separator: string): TokenList {
  if (list.tokens.length === 0) return { ...list, tokens: [token], separators: [] };
  const tokens = [...list.tokens];
  const separators = [...list.separators];
  tokens.splice(index, 0, token);
  // A token inserted after others brings the separator before it; at the front, the one after it.
  separators.splice(index > 0 ? index - 1 : 0, 0, separator);
  return { ...list, tokens, separators };
}

/** The exact inverse of insertAt: removes the token with the separator insertAt would have added. */
function removeAt(list: TokenList, index: number): { list: TokenList; removed: RemovedToken } {
  const token = list.tokens[index];
  if (list.tokens.length === 1) {
    return {
      list: { ...list, tokens: [], separators: [] },
      removed: { index, token, separator: "", trailing: list.trailing },
    };
  }
  const tokens = [...list.tokens];
  const separators = [...list.separators];
  const [separator] = separators.splice(index > 0 ? index - 1 : 0, 1);
  tokens.splice(index, 1);
  return { list: { ...list, tokens, separators }, removed: { index, token, separator } };
}

function reinsert(list: TokenList, removed: RemovedToken, syntax: TokenSyntax): TokenList {
  if (list.tokens.length === 0) {
    const space = list.leading + list.trailing;
    const trailing = removed.trailing !== undefined && space.endsWith(removed.trailing) ? removed.trailing : "";
    return { leading: space.slice(0, space.length - trailing.length), tokens: [removed.token], separators: [], trailing };
  }
  const index = Math.min(removed.index, syntax.end(list));
  return insertAt(list, index, removed.token, removed.separator === "" ? syntax.separator : removed.separator);
}

function replaceAt(list: TokenList, index: number, token: string): TokenList {
  const tokens = [...list.tokens];
  tokens[index] = token;
  return { ...list, tokens };
}

/** Whether a `remove` entry takes `token` off: a bare key takes every value, `key=value` only that one. */
export function isRemovedBy(syntax: TokenSyntax, token: string, entry: string): boolean {
  const key = syntax.key(entry);
  if (key === undefined || syntax.key(token) !== key) return false;
  return entry === key || syntax.satisfies(token, entry);
}

function applyTokens(
  list: TokenList,
  request: TokenRequest,
  syntax: TokenSyntax,
): { list: TokenList; owned: TokenOwnership } {
  let current = list;
  const removed: RemovedToken[] = [];
  const replaced: ReplacedToken[] = [];
  const added: string[] = [];
  const removals = request.remove ?? [];
  // From the end, so each recorded index is still right when revert re-inserts in reverse order.
  for (let i = syntax.end(current) - 1; i >= 0 && removals.length > 0; i--) {
    if (!removals.some((entry) => isRemovedBy(syntax, current.tokens[i], entry))) continue;
    const result = removeAt(current, i);
    current = result.list;
    removed.push(result.removed);
  }
  for (const wanted of request.ensure) {
    const key = syntax.key(wanted);
    if (key === undefined) continue;
    const end = syntax.end(current);
    let occurrence = 0;
    for (let i = 0; i < end; i++) {
      const token = current.tokens[i];
      if (syntax.key(token) !== key) continue;
      if (!syntax.satisfies(token, wanted)) {
        replaced.push({ key, occurrence, original: token, replacement: wanted });
        current = replaceAt(current, i, wanted);
      }
      occurrence++;
    }
    if (occurrence === 0) {
      current = insertAt(current, end, wanted, syntax.separator);
      added.push(wanted);
    }
  }
  return { list: current, owned: { added, replaced, removed } };
}

/** Undoes `owned`: drops what was added, restores replaced values, re-inserts removed tokens. */
function revertTokens(list: TokenList, owned: TokenOwnership, syntax: TokenSyntax): TokenList {
  let current = list;
  for (const token of [...owned.added].reverse()) {
    const end = syntax.end(current);
    const index = end === 0 ? -1 : current.tokens.lastIndexOf(token, end - 1);
    if (index >= 0) current = removeAt(current, index).list;
  }
  for (const entry of owned.replaced) {
    const index = indexOfOccurrence(current, entry.key, entry.occurrence, syntax);
    if (index >= 0 && current.tokens[index] === entry.replacement) current = replaceAt(current, index, entry.original);
  }
  for (const entry of [...owned.removed].reverse()) current = reinsert(current, entry, syntax);
  return current;
}

function indexOfOccurrence(list: TokenList, key: string, occurrence: number, syntax: TokenSyntax): number {
  let seen = 0;
  const end = syntax.end(list);
  for (let i = 0; i < end; i++) {
    if (syntax.key(list.tokens[i]) !== key) continue;
    if (seen === occurrence) return i;
    seen++;
  }
  return -1;
}

export interface TokenPlan {
  readonly text: string;
  readonly owned: TokenOwnership;
  /** Human-readable, for `pulumi preview`: "+ iommu=pt", "intel_iommu=off -> intel_iommu=on". */
  readonly changes: readonly string[];
}

/**
 * A run that died after its write but before Pulumi recorded its state leaves changes nobody owns.
 * The backup holds the bytes from before our first write: when the whole difference between it and
 * `current` is what one apply of `request` makes (tokens `ensure` names added or replacing others
 * of their key, tokens `remove` names gone), it is ours, and the ownership returned undoes exactly
 * that. Anything else (a hand edit, a run stopped with other args) is not guessed at: undefined,
 * nothing is taken, and a revert leaves those tokens as they are.
 */
export function adoptTokens(original: string, current: string, request: TokenRequest, syntax: TokenSyntax): TokenOwnership | undefined {
  const before = syntax.parse(original);
  const after = syntax.parse(current);
  const editable = (list: TokenList) => list.tokens.slice(0, syntax.end(list));
  const gone = multisetMinus(editable(before), editable(after));
  const come = multisetMinus(editable(after), editable(before));
  const removedByRequest = (token: string) => (request.remove ?? []).some((entry) => isRemovedBy(syntax, token, entry));
  const explained =
    come.every((token) => request.ensure.includes(token)) &&
    gone.every((token) => removedByRequest(token) || come.some((c) => syntax.key(c) !== undefined && syntax.key(c) === syntax.key(token)));
  // Replayed with the primitives an apply uses, so the ownership holds the exact separators and
  // indices; a difference one apply cannot produce fails the comparison and is not taken.
  const replay = explained ? applyTokens(before, { ensure: [...new Set(come)], remove: gone.filter(removedByRequest) }, syntax) : undefined;
  return replay && formatTokens(replay.list) === current ? replay.owned : undefined;
}

/**
 * Reverts what a previous apply owned, then applies the request afresh: a second run with the
 * ownership the first returned gives the same text and ownership, and dropping an arg from
 * `ensure` takes it back off the host. Without that ownership but with `backup` (the bytes saved
 * before our first write), our own earlier changes are recognised from it (adoptTokens).
 */
export function planTokens(
  text: string,
  request: TokenRequest & { readonly previouslyOwned?: TokenOwnership; readonly backup?: string },
  syntax: TokenSyntax,
): TokenPlan {
  const previouslyOwned =
    request.previouslyOwned ?? (request.backup !== undefined ? adoptTokens(request.backup, text, request, syntax) : undefined);
  const before = syntax.parse(text);
  const base = previouslyOwned ? revertTokens(before, previouslyOwned, syntax) : before;
  const { list, owned } = applyTokens(base, request, syntax);
  return { text: formatTokens(list), owned, changes: describeTokenChanges(before, list, syntax) };
}

export function revertTokenText(text: string, owned: TokenOwnership, syntax: TokenSyntax): string {
  return formatTokens(revertTokens(syntax.parse(text), owned, syntax));
}

export function describeTokenChanges(before: TokenList, after: TokenList, syntax: TokenSyntax): string[] {
  const gone = multisetMinus(before.tokens, after.tokens);
  const come = multisetMinus(after.tokens, before.tokens);
  const changes: string[] = [];
  for (const token of gone) {
    const key = syntax.key(token);
    const successor = come.findIndex((candidate) => key !== undefined && syntax.key(candidate) === key);
    if (successor >= 0) changes.push(`${token} -> ${come.splice(successor, 1)[0]}`);
    else changes.push(`- ${token}`);
  }
  return [...changes, ...come.map((token) => `+ ${token}`)];
}

function multisetMinus(from: readonly string[], minus: readonly string[]): string[] {
  const left = [...minus];
  return from.filter((token) => {
    const i = left.indexOf(token);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

const isBlank = (c: string) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\v" || c === "\f";

/**
 * Splits on runs of whitespace, as the kernel does (lib/cmdline.c next_arg): a double quote makes
 * the whitespace up to the closing quote part of the token, so `foo="a b"` is one token.
 */
export function parseWhitespaceTokens(text: string): TokenList {
  let i = 0;
  while (i < text.length && isBlank(text[i])) i++;
  const leading = text.slice(0, i);
  const tokens: string[] = [];
  const separators: string[] = [];
  let trailing = "";
  while (i < text.length) {
    let j = i;
    let quoted = false;
    while (j < text.length && (quoted || !isBlank(text[j]))) {
      if (text[j] === '"') quoted = !quoted;
      j++;
    }
    tokens.push(text.slice(i, j));
    let k = j;
    while (k < text.length && isBlank(text[k])) k++;
    if (k < text.length) separators.push(text.slice(j, k));
    else trailing = text.slice(j, k);
    i = k;
  }
  return { leading, tokens, separators, trailing };
}

/** Tokens between every occurrence of a fixed separator: commas of a list, lines of a file. */
export function splitTokens(text: string, separator: string): TokenList {
  const tokens = text.split(separator);
  return { leading: "", tokens, separators: tokens.slice(1).map(() => separator), trailing: "" };
}

/** Whitespace-separated words such as mkinitfs `features="ata base ide"`. */
export const wordSyntax: TokenSyntax = {
  parse: parseWhitespaceTokens,
  separator: " ",
  key: (token) => token,
  satisfies: (token, wanted) => token === wanted,
  end: (list) => list.tokens.length,
};

