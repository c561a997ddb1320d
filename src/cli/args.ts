/**
 * Command lines: the options every command parses alike, and the command line of a command that
 * runs a pipeline module (sluice's own options, a few positionals, the pipeline's arguments).
 */
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";

/** What {@link splitCommandLine} found. */
export interface CommandLine {
  /** Values of the options that take one, in the order given (an option may repeat). */
  readonly values: ReadonlyMap<string, readonly string[]>;
  /** Flags that were given. */
  readonly flags: ReadonlySet<string>;
  /** The positionals, up to the number asked for (the module path is the last). */
  readonly positionals: readonly string[];
  /** Everything meant for the pipeline: arguments after the positionals, and all after `--`. */
  readonly rest: readonly string[];
  /** `--help` or `-h` before the module path. */
  readonly help: boolean;
}

/**
 * Splits arguments into sluice's options (`--name value` or `--name=value` for `valueOptions`,
 * `--flag` for `flags`), `positionals` positionals, and the rest, which goes to the pipeline.
 * sluice's options are recognised anywhere before `--`, so a pipeline option of the same name
 * must come after `--`. Before the last positional an unknown option is an error (it would
 * otherwise be taken for the module path); after it, unknown options are the pipeline's.
 */
export function splitCommandLine(
  args: readonly string[],
  spec: { readonly valueOptions: ReadonlySet<string>; readonly flags: ReadonlySet<string>; readonly positionals: number },
): CommandLine {
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  const positionals: string[] = [];
  const rest: string[] = [];
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      rest.push(...args.slice(i + 1));
      break;
    }
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const beforeModule = positionals.length < spec.positionals;
    if (spec.valueOptions.has(name)) {
      const value = eq > 0 && name !== arg ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || value === "") throw new Error(`${name} needs a value`);
      values.set(name, [...(values.get(name) ?? []), value]);
    } else if (spec.flags.has(arg)) {
      flags.add(arg);
    } else if (beforeModule && (arg === "--help" || arg === "-h")) {
      help = true;
    } else if (beforeModule && arg.startsWith("-")) {
      throw new Error(`unknown option ${arg} before the pipeline module (pipeline options go after its path)`);
    } else if (beforeModule) {
      positionals.push(arg);
    } else {
      rest.push(arg);
    }
  }
  return { values, flags, positionals, rest, help };
}

/**
 * An option's value as a whole number of at least 0: `fallback` when the option was not given,
 * undefined when it is not such a number (the command says so and exits 2).
 *
 * @example
 * const limit = wholeNumberOption(values.limit, Number.POSITIVE_INFINITY);
 */
export function wholeNumberOption(text: string | boolean | undefined, fallback: number): number | undefined {
  if (text === undefined) return fallback;
  const value = Number(text);
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** The values `parseArgs` gives for an options table: a boolean for flags, text for the rest. */
export type OptionValues<O extends ParseArgsOptionsConfig> = {
  [K in keyof O]?: O[K] extends { type: "boolean" } ? boolean : string;
};

/**
 * Parses a command's options (strict, positionals allowed, `--help`/`-h` added) and handles
 * what every command handles alike. Returns the options and positionals, or the exit code when
 * the command has nothing more to do: 0 after printing `usage` for `--help`, 2 after printing
 * the problem and `usage` for an unknown or malformed option.
 *
 * @example
 * const parsed = parseOptions("head", USAGE, args, { n: { type: "string", short: "n" } });
 * if (typeof parsed === "number") return parsed;
 */
export function parseOptions<const O extends ParseArgsOptionsConfig>(
  command: string,
  usage: string,
  args: string[],
  options: O,
): { values: OptionValues<O>; positionals: string[] } | number {
  let parsed: { values: { [option: string]: unknown; help?: unknown }; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (error) {
    console.error(`sluice ${command}: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(usage);
    return 0;
  }
  return { values: parsed.values as OptionValues<O>, positionals: parsed.positionals };
}
