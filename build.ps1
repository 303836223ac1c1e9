#!/usr/bin/env pwsh
# NeuralCore build script. Run through the local tool: `dotnet tool restore && dotnet pwsh build.ps1 <task>`.
#   build   Release build of the whole solution
#   test    all test projects; prints one closing line "N passed, N failed, N skipped"
#   bench   BenchmarkDotNet suites (pass a filter after --, e.g. build.ps1 bench -- --filter '*Gemm*')
#   seed    the seed experiment on MNIST (train small, train big, prune + fine-tune, compare)
param(
    [Parameter(Position = 0)][ValidateSet('build', 'test', 'bench', 'seed')][string]$Task = 'build',
    [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest = @()
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

function Invoke-Checked([string]$exe, [string[]]$argv) {
    & $exe @argv
    if ($LASTEXITCODE -ne 0) { throw "'$exe $($argv -join ' ')' failed with exit code $LASTEXITCODE" }
}

switch ($Task) {
    'build' {
        Invoke-Checked dotnet @('build', 'NeuralCore.sln', '-c', 'Release', '--nologo')
    }
    'test' {
        Invoke-Checked dotnet @('build', 'NeuralCore.sln', '-c', 'Release', '--nologo', '-v', 'q')
        $results = Join-Path $PSScriptRoot 'TestResults'
        if (Test-Path $results) { Remove-Item -Recurse -Force $results }
        & dotnet test NeuralCore.sln -c Release --no-build --nologo --logger 'trx' --results-directory $results @Rest
        $code = $LASTEXITCODE
        $passed = 0; $failed = 0; $skipped = 0
        foreach ($trx in Get-ChildItem -Path $results -Filter '*.trx' -ErrorAction SilentlyContinue) {
            $counters = ([xml](Get-Content $trx.FullName)).TestRun.ResultSummary.Counters
            $passed += [int]$counters.passed
            $failed += [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted
            # NOTE: xUnit v3 reports dynamically skipped tests as not executed without counting them in notExecuted.
            $skipped += [int]$counters.total - [int]$counters.executed
        }
        Write-Output "$passed passed, $failed failed, $skipped skipped"
        if ($code -ne 0) { exit $code }
        if ($passed -eq 0) { Write-Error 'No test ran.'; exit 1 }
    }
    'bench' {
        Invoke-Checked dotnet (@('run', '-c', 'Release', '--project', 'benchmarks/NeuralCore.Benchmarks', '--') + $Rest)
    }
    'seed' {
        Invoke-Checked dotnet @('build', 'src/NeuralCore.Cli', '-c', 'Release', '--nologo', '-v', 'q')
        $cli = Join-Path $PSScriptRoot 'src/NeuralCore.Cli/bin/Release/net10.0/NeuralCore.Cli.dll'
        Invoke-Checked dotnet (@($cli, 'reproduce', 'mnist') + $Rest)
    }
}
