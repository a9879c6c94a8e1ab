"""`eenn accept-edit BUNDLE`: accept a deliberate hand edit of a bundle's solution.json.

The search writes solution.json with a `content_sha256` of its own content, and every command
that reads the bundle refuses a file that no longer matches it: an edited threshold would
otherwise go on the board unnoticed while the predicted metrics still describe the old one.
This command is the one way to say "I changed it on purpose".
"""
from __future__ import annotations

import click


@click.command("accept-edit")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
def accept_edit_cmd(bundle: str) -> None:
    """Accept a hand edit of BUNDLE/solution.json (e.g. an exit threshold changed on purpose).

    Re-records the file's content hash (the previous one is kept under `accepted_edits`), after
    checking that the edited file is still a valid solution and that the other bundle files are
    intact. The predicted metrics in solution.json are not recomputed: they describe the
    search's values. Regenerate the project and measure it with `eenn hil run`.
    """
    from eenn.augment.bundle import accept_edit

    before, after = accept_edit(bundle)
    if before == after:
        click.echo(f"{bundle}: solution.json is as written; nothing to accept (bundle {after[:12]})")
        return
    click.echo(f"accepted the edit of {bundle}/solution.json: bundle hash {before[:12]} -> {after[:12]}")
    click.echo("the predicted metrics in it are the search's (computed before the edit); regenerate the project "
               f"(`eenn generate {bundle} --kit KIT --out DIR --force`) and measure it with `eenn hil run`")
