// The messages between the environments service and the setup script (runner/setup.ts), which
// runs in a setup sandbox. The script imports these types only, so the image needs no copy.

/** What a setup sandbox's setup script does; its last argument, as JSON. */
export interface SetupRequest {
  /** Generated files (the manifest: dependency list, import map, …), relative to installDir. */
  files: { path: string; content: string }[];
  /** The package manager: arguments after the runtime's own binary, run in installDir. */
  install: string[];
  /** Added to the sandbox's environment for the package manager ('K=V'). */
  installEnv: string[];
  /** Where the install runs: a tmpfs of at most maxBytes that no module can write. */
  installDir: string;
  /** Files and directories the install may add to the volume; with more, nothing is sent. */
  maxFiles: number;
  /** Bytes (file sizes) the install may add to the volume: the tmpfs's size as well. */
  maxBytes: number;
}

/**
 * The first line of the setup script's stdout (the package manager's output goes to stderr).
 * After an 'installed' line, the rest of stdout is a tar of what was installed (directories and
 * regular files, paths relative to installDir, parents first); after any other, nothing.
 */
export type SetupResult =
  | { outcome: 'installed'; files: number; bytes: number }
  /** The package manager failed for a reason of its own. */
  | { outcome: 'failed'; exitCode: number | null; signal: string | null }
  /** The install passed a cap (it stopped at the tmpfs's size): nothing is sent. */
  | { outcome: 'over-cap'; cap: 'files' | 'bytes' };
