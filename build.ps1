#!/usr/bin/env pwsh
# NeuralCore build script. Run through the local tool: `dotnet tool restore && dotnet pwsh build.ps1 <task>`.
#   build   Release build of the whole solution
#   test    all test projects; prints one closing line "N passed, N failed, N skipped"; a test that runs past
#           10 minutes is named and fails the run (dotnet test's hang blame)
#   bench   BenchmarkDotNet suites (pass a filter after --, e.g. build.ps1 bench -- --filter '*Gemm*')
#   seed    the seed experiment on MNIST (train small, train big, prune + fine-tune, compare)
#   publish self-contained single-file out/publish/neuralcore for linux-x64 (runs where no .NET is installed,
#           e.g. a GPU machine: `out/publish/neuralcore selftest --device cuda`; see benchmarks/peers/README.md)
param(
    [Parameter(Position = 0)][ValidateSet('build', 'test', 'bench', 'seed', 'publish')][string]$Task = 'build',
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
        # A test still running after 10 minutes (the longest take under a minute) is reported by name and its test host
        # stopped, so a hang fails the run at once instead of holding it until CI's limit.
        & dotnet test NeuralCore.sln -c Release --no-build --nologo --logger 'trx' --results-directory $results `
            --blame-hang-timeout 10m --blame-hang-dump-type none @Rest
        $code = $LASTEXITCODE
        $passed = 0; $failed = 0; $skipped = 0
        foreach ($trx in Get-ChildItem -Path $results -Filter '*.trx' -ErrorAction SilentlyContinue) {
            $counters = ([xml](Get-Content -LiteralPath $trx.FullName)).TestRun.ResultSummary.Counters
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
    'publish' {
        $out = Join-Path $PSScriptRoot 'out/publish'
        if (Test-Path $out) { Remove-Item -Recurse -Force $out }
        # NOTE: TrimMode=partial trims only the framework (assemblies marked trimmable) and keeps NeuralCore's and
        # its packages' assemblies whole, with reflection-based JSON on: the run files, reports and --json output
        # serialize records by reflection, which full trimming would break. The kernels (kernels/*.cu) are
        # embedded resources of NeuralCore.Cuda and stay inside the single file; native libraries of the packages
        # (SkiaSharp for the charts) are bundled too and extracted on first run.
        Invoke-Checked dotnet (@('publish', 'src/NeuralCore.Cli', '-c', 'Release', '-r', 'linux-x64', '--self-contained', '--nologo',
                '-p:PublishSingleFile=true', '-p:PublishTrimmed=true', '-p:InvariantGlobalization=true',
                '-p:TrimMode=partial', '-p:EnableTrimAnalyzer=false', '-p:SuppressTrimAnalysisWarnings=true',
                '-p:JsonSerializerIsReflectionEnabledByDefault=true', '-p:IncludeNativeLibrariesForSelfExtract=true',
                '-p:DebugType=none', '-o', $out) + $Rest)
        # The project copies its app host to 'neuralcore'; keep that one name only, without the libraries' XML
        # docs and symbols that publish puts beside it.
        $appHost = Join-Path $out 'NeuralCore.Cli'
        if (Test-Path $appHost) { Remove-Item -Force $appHost }
        Get-ChildItem $out -File | Where-Object { $_.Extension -in '.xml', '.pdb' } | Remove-Item -Force
        $exe = Join-Path $out 'neuralcore'
        Invoke-Checked $exe @('--help') | Out-Null
        $mib = [math]::Round((Get-Item $exe).Length / 1MB, 1)
        Write-Output "out/publish/neuralcore: $mib MiB, self-contained linux-x64; try 'out/publish/neuralcore doctor'"
    }
}
