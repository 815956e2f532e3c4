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
  /** The environment's volume: what the install wrote is copied here, same relative paths. */
  targetDir: string;
  /** Files and directories the install may add to the volume; with more, nothing is copied. */
  maxFiles: number;
  /** Bytes (file sizes) the install may add to the volume: the tmpfs's size as well. */
  maxBytes: number;
}

/** The setup script's one line of stdout (the package manager's output goes to stderr). */
export type SetupResult =
  | { outcome: 'installed'; files: number; bytes: number }
  /** The package manager failed for a reason of its own. */
  | { outcome: 'failed'; exitCode: number | null; signal: string | null }
  /** The install passed a cap (it stopped at the tmpfs's size): nothing was copied. */
  | { outcome: 'over-cap'; cap: 'files' | 'bytes' };
