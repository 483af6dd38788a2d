// What a benchmark module exports and returns; run.ts writes it to bench/results/<name>.json and .svg.
import type { Bench } from './scratch.js';
import type { Chart } from './svg.js';
import type { Table } from './table.js';

export type Say = (line: string) => void;

export interface Goal {
  text: string;
  met: boolean;
  value: unknown;
}

/** A figure for bench/summary: a `goal` makes it judged (met or not), else it is shown only. */
export interface Headline {
  metric: string;
  value: number | string;
  unit?: string;
  goal?: string;
  met?: boolean;
  detail?: string;
}

export interface BenchResult {
  summary: string[];
  tables: Table[];
  chart: Chart;
  config: Record<string, unknown>;
  figures: Record<string, unknown>;
  goal: Goal;
  headlines?: Headline[];
}

export interface BenchModule {
  title: string;
  run(bench: Bench, log: Say): Promise<BenchResult>;
}
