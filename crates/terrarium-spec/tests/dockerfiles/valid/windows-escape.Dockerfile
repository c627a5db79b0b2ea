# escape=`

# Windows containers use the backtick so that paths can end in a backslash.
FROM mcr.microsoft.com/windows/servercore:ltsc2022

SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]

ENV PYTHON_VERSION 3.11.9
WORKDIR C:\

RUN $url = ('https://www.python.org/ftp/python/{0}/python-{0}-amd64.exe' -f $env:PYTHON_VERSION); `
    Invoke-WebRequest -Uri $url -OutFile 'python.exe'; `
    # comment lines inside a continuation are dropped
    Start-Process python.exe -Wait -ArgumentList @( `
        '/quiet', `
        'InstallAllUsers=1', `
        'TargetDir=C:\Python' `
    ); `
    Remove-Item python.exe -Force

COPY app\ C:\app\
WORKDIR C:\app
CMD ["python", "C:\\app\\main.py"]
