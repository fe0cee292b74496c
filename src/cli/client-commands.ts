import type { Command } from 'commander';
import { registerActionCommands } from './actions.js';
import { registerMachineCommands } from './machines.js';
import { registerProfileCommands } from './profiles.js';

/**
 * The commands that talk to a running server through the typed client (src/client), as any
 * MDE client would: `actions`, `machines`, the action verbs and `profile` (docs/cli.md).
 */
export function registerClientCommands(program: Command): void {
  registerActionCommands(program);
  registerMachineCommands(program);
  registerProfileCommands(program);
}
