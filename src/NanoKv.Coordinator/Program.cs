using System.CommandLine;
using NanoKv.Coordinator;
using NanoKv.Core;
using NanoKv.Ops;

if (args is ["serve" or "dev", ..] && !args.Any(a => a is "--help" or "-h" or "-?"))
{
    JitMode.EnsureFullJit();
}

var root = new RootCommand("nanokv coordinator: routes writes, keeps metadata in RocksDB, runs ops commands")
{
    Cli.Serve(),
    Cli.Dev(),
    MigrateMeta.Command(),
};
foreach (var ops in OpsCli.All())
{
    root.Subcommands.Add(ops);
}
return await root.Parse(args).InvokeAsync();
