"""Interactive panels: controls + presets + Run button, summary and figure redrawn in place.

``build_panel`` wires ipywidgets to plain functions (config -> run -> summary text and
figure), so a test can drive a panel without a browser: set ``panel.controls[name].value``,
call ``panel.run_button.click()``, read ``panel.summary.value`` and ``panel.image.value``.
A simulation only starts on Run (or on choosing a preset), never on a slider drag.
"""

from __future__ import annotations

import html
import statistics
import time
from typing import Any, Callable, Mapping

import ipywidgets as widgets

from simulator.errors import InputError
from simulator.lessons.show import PANEL_DPI, close, figure_png

__all__ = ["Panel", "build_panel", "slider", "float_slider", "dropdown", "checkbox", "measure_panel"]

CUSTOM = "(custom)"


def slider(description: str, value: int, lo: int, hi: int, step: int = 1) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=lo, max=hi, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"})


def float_slider(description: str, value: float, lo: float, hi: float, step: float) -> widgets.FloatSlider:
    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                               continuous_update=False, style={"description_width": "initial"})


def dropdown(description: str, options: Any, value: Any) -> widgets.Dropdown:
    return widgets.Dropdown(options=options, value=value, description=description,
                            style={"description_width": "initial"})


def checkbox(description: str, value: bool) -> widgets.Checkbox:
    return widgets.Checkbox(value=value, description=description, indent=False)


def _registry_runner(scenario_name: str) -> Callable[[dict[str, Any]], Any]:
    from simulator.scenarios.registry import SCENARIOS

    scenario = SCENARIOS[scenario_name]

    def run(values: dict[str, Any]) -> Any:
        return scenario.run(scenario.config_model.model_validate(values))
    return run


class Panel(widgets.VBox):
    """The widget a lesson shows; also the object its tests drive."""

    def __init__(self, scenario_name: str, controls: Mapping[str, widgets.ValueWidget],
                 presets: Mapping[str, Mapping[str, Any]], summary_fn: Callable[[Any], str],
                 plot_fn: Callable[[Any], Any], *, base: Mapping[str, Any] | None = None,
                 runner: Callable[[dict[str, Any]], Any] | None = None,
                 to_config: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 title: str = "", dpi: int = PANEL_DPI):
        self.scenario_name = scenario_name
        self.controls = dict(controls)
        self.defaults = {name: w.value for name, w in self.controls.items()}
        unknown = {k for p in presets.values() for k in p} - set(self.controls)
        if unknown:
            raise ValueError(f"presets set values of no control: {sorted(unknown)}")
        self.preset_values = {name: dict(values) for name, values in presets.items()}
        self.summary_fn, self.plot_fn = summary_fn, plot_fn
        self.base = dict(base or {})
        self.runner = runner or _registry_runner(scenario_name)
        self.to_config = to_config
        self.dpi = dpi
        self.result: Any = None
        self.runs = 0
        self.last_seconds = 0.0
        self._applying = False

        self.presets = widgets.Dropdown(options=[CUSTOM, *self.preset_values], value=CUSTOM,
                                        description="preset", style={"description_width": "initial"})
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.status = widgets.Label(value="")
        self.summary = widgets.HTML(value="<pre>press Run</pre>")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.run_button.on_click(lambda _b: self.run())
        self.presets.observe(self._on_preset, names="value")
        for w in self.controls.values():
            w.observe(self._on_control, names="value")
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        super().__init__(children=[*header, self.presets, *self.controls.values(),
                                   widgets.HBox([self.run_button, self.status]), self.summary, self.image])

    # ------------------------------------------------------------------ state
    def values(self) -> dict[str, Any]:
        return {name: w.value for name, w in self.controls.items()}

    def config(self) -> dict[str, Any]:
        values = {**self.base, **self.values()}
        return self.to_config(values) if self.to_config else values

    def apply_preset(self, name: str, run: bool = True) -> None:
        """Set every control to the preset's value (or its default) and run."""
        values = {**self.defaults, **self.preset_values[name]}
        self._applying = True
        try:
            for key, value in values.items():
                self.controls[key].value = value
            self.presets.value = name
        finally:
            self._applying = False
        if run:
            self.run()

    def _on_preset(self, change: dict[str, Any]) -> None:
        if change["new"] != CUSTOM and not self._applying:
            self.apply_preset(change["new"])

    def _on_control(self, _change: dict[str, Any]) -> None:
        if not self._applying and self.presets.value != CUSTOM:
            self._applying = True
            try:
                self.presets.value = CUSTOM  # the controls no longer match the preset's name
            finally:
                self._applying = False

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Run the scenario on the current controls; redraw summary and figure in place."""
        started = time.perf_counter()
        self.status.value = "running..."
        try:
            result = self.runner(self.config())
        except InputError as exc:
            self.status.value = ""
            self.summary.value = f"<pre>not run: {html.escape(str(exc))}</pre>"
            return None
        fig = self.plot_fn(result)
        try:
            png = figure_png(fig, self.dpi)
        finally:
            close(fig)
        self.result = result
        self.summary.value = f"<pre>{html.escape(self.summary_fn(result))}</pre>"
        self.image.value = png
        self.runs += 1
        self.last_seconds = time.perf_counter() - started
        self.status.value = f"run {self.runs}: {self.last_seconds:.2f} s"
        return result

    @property
    def summary_text(self) -> str:
        return html.unescape(self.summary.value.removeprefix("<pre>").removesuffix("</pre>"))


def build_panel(scenario_name: str, controls: Mapping[str, widgets.ValueWidget],
                presets: Mapping[str, Mapping[str, Any]], summary_fn: Callable[[Any], str],
                plot_fn: Callable[[Any], Any], *, run_now: bool = True, **options: Any) -> Panel:
    """A ``Panel`` for ``scenario_name``; with ``run_now`` it shows the first preset's run.

    ``controls`` maps config field names to widgets; ``presets`` maps a name to control values
    (controls a preset leaves out go back to their initial value). ``summary_fn(result)`` gives
    the text; ``plot_fn(result)`` returns a new matplotlib figure (the panel renders and closes it).
    Options: ``base`` (config values no control sets), ``runner(config_dict) -> result``
    (default: the scenario registry's config model and runner), ``to_config``, ``title``, ``dpi``.
    """
    panel = Panel(scenario_name, controls, presets, summary_fn, plot_fn, **options)
    if run_now:
        if panel.preset_values:
            panel.apply_preset(next(iter(panel.preset_values)))
        else:
            panel.run()
    return panel


def measure_panel(panel: Panel, preset: str | None = None, repeats: int = 5) -> float:
    """Median seconds of one Run click on ``preset`` (default: the first preset)."""
    name = preset or next(iter(panel.preset_values))
    panel.apply_preset(name, run=False)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        panel.run_button.click()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
