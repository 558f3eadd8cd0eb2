"""The command line: :mod:`~skincls.cli.root` builds the Typer app from the command modules
(``data_cmds``, ``train_cmds``, ``serve_cmds``), which parse options and call one library
function each and never import the app back."""
