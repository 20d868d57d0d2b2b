"""lsp_server: the application layer. The only package that knows LSP.

Holds the pygls server, the command-line front ends (`complete`, `repair`, `check`,
`train`, `eval`, `bench`) and the job layer that turns editor requests into engine jobs.
"""
