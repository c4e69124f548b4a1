"""Example plugins, one idea each, shipped with cvkit as ``cvkit.examples``: run one by name
(``cvkit evaluate fc_attention``), list them with ``cvkit plugins``, copy one to start your own."""
