/**
 * A chart drawn by uPlot: time series (lines) or categories (bars). The server renders the titled
 * frame (or an "empty" note); the browser draws into it, follows its width and the colour scheme.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";

/** One line or bar series. */
export interface ChartSeries {
  label: string;
  values: number[];
  /** Which of the theme's chart colours (`--chart-1` …) to use. */
  color: 1 | 2 | 3;
}

/** Props of `Chart`. */
export interface ChartProps {
  title: string;
  kind: "time" | "bars";
  /** Epoch milliseconds for `time`; ignored for `bars` (categories are used). */
  x: number[];
  series: ChartSeries[];
  /** Bar labels, one per value. */
  categories?: string[];
  /** Shown instead of the chart when every value is zero. */
  emptyText: string;
  /** Formats axis values (counts). */
  formatValue?: (n: number) => string;
}

const HEIGHT = 190;

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function buildOptions(props: ChartProps, width: number): uPlot.Options {
  const muted = cssVar("--muted");
  const grid = cssVar("--chart-grid");
  const fmt = props.formatValue ?? ((n: number) => String(n));
  const axisY: uPlot.Axis = {
    stroke: muted,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1 },
    size: 48,
    values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? fmt(v) : "")),
  };
  if (props.kind === "time") {
    return {
      width,
      height: HEIGHT,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { stroke: muted, grid: { show: false }, ticks: { stroke: grid, width: 1 } },
        axisY,
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: cssVar(`--chart-${s.color}`),
          width: 2,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v === null ? "–" : fmt(v)),
        })),
      ],
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
    };
  }
  const labels = props.categories ?? [];
  // Labels turn sideways when they would not fit side by side.
  const longest = Math.max(0, ...labels.map((l) => l.length));
  const crowded = labels.length * longest * 7.5 > width - 60;
  return {
    width,
    height: HEIGHT,
    scales: {
      x: { time: false, range: () => [-0.5, Math.max(0.5, labels.length - 0.5)] },
      y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [
      {
        stroke: muted,
        grid: { show: false },
        ticks: { show: false },
        splits: () => labels.map((_, i) => i),
        values: (_u, splits) => splits.map((i) => labels[i] ?? ""),
        rotate: crowded ? -35 : 0,
        size: crowded ? 72 : 32,
      },
      axisY,
    ],
    series: [
      {},
      ...props.series.map((s) => ({
        label: s.label,
        stroke: cssVar(`--chart-${s.color}`),
        fill: cssVar(`--chart-${s.color}`),
        width: 0,
        paths: uPlot.paths.bars!({ size: [0.7, 48] }),
        points: { show: false },
      })),
    ],
    legend: { show: props.series.length > 1, live: false },
    cursor: { show: false },
  };
}

function toData(props: ChartProps): uPlot.AlignedData {
  const x = props.kind === "time"
    ? props.x.map((ms) => ms / 1000)
    : (props.categories ?? []).map((_, i) => i);
  return [x, ...props.series.map((s) => s.values)];
}

/** A titled chart; draws nothing but its frame until it runs in a browser. */
export function Chart(props: ChartProps) {
  const ref = useRef<HTMLDivElement>(null);
  const [scheme, setScheme] = useState(0);
  const empty = props.series.every((s) => s.values.every((v) => !v));
  const dataKey = JSON.stringify([props.x, props.series, props.categories]);

  useEffect(() => {
    const media = matchMedia("(prefers-color-scheme: dark)");
    const onChange = () => setScheme((n) => n + 1);
    media.addEventListener("change", onChange);
    return () => media.removeEventListener("change", onChange);
  }, []);

  useEffect(() => {
    const el = ref.current;
    if (!el || empty) return;
    const plot = new uPlot(buildOptions(props, el.clientWidth || 300), toData(props), el);
    const observer = new ResizeObserver(() => {
      const width = el.clientWidth;
      if (width && width !== plot.width) plot.setSize({ width, height: HEIGHT });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [dataKey, scheme, empty, props.title]);

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div class="chart-canvas" ref={ref} role="img" aria-label={props.title}>
        {empty ? <div class="chart-empty">{props.emptyText}</div> : null}
      </div>
    </figure>
  );
}
