"""``%labkit``: what the kit offers here: magics, models and settings."""
from __future__ import annotations

from ._base import Magic, MagicParser

parser = MagicParser("%labkit", description="List labkit's magics, models and settings.")


class Info:
    def __init__(self, magics, models, settings):
        self.magics, self.models, self.settings = magics, models, settings

    def __repr__(self):
        lines = ["labkit magics:"]
        lines += [f"  {'%%' if m.kind == 'cell' else '%'}{m.name:10s} {m.summary}" for m in self.magics]
        lines += ["models:"]
        lines += [f"  {m['name']:12s} {m['kind']:10s} {m['description']}" for m in self.models]
        lines += ["settings:"]
        lines += [f"  {k}: {v}" for k, v in self.settings.items()]
        lines += ["Every magic has --help, e.g. `%%tokenize --help`."]
        return "\n".join(lines)


def run(args, body, shell):
    from . import all_magics
    from .. import doctor

    try:
        from .. import models

        model_rows = [{"name": i.name, "kind": i.kind, "description": i.description + ("" if i.available else
                       " (not built: `labkit zoo build`)")} for i in models.list_models()]
    except ImportError:
        model_rows = []
    return Info(all_magics(), model_rows, doctor.settings())


MAGICS = [Magic("labkit", "line", parser, run, out_option=False)]
