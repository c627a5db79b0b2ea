# A comment first: the escape line below is a comment, not a directive.
# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
RUN Write-Host one; `
    Write-Host two
