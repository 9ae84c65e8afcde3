# Copies the CUDA sources for the CPU emulation (tools/cuda-emu/run.sh), rewriting every launch
# kernel<<<grid, block, smem, stream>>> (args) into emu_launch (grid, block, smem, name, [&] { kernel (args); }).
# Headers that the emulation fakes (FAKE_DIR) are not copied.
import sys, os
src, dst, fake = sys.argv[1], sys.argv[2], sys.argv[3]
def split_top(s):
    parts=[]; depth=0; cur=''
    for c in s:
        if c in '([{<': depth+=1
        if c in ')]}>': depth-=1
        if c==',' and depth==0: parts.append(cur); cur=''
        else: cur+=c
    parts.append(cur); return [p.strip() for p in parts]
for f in os.listdir(src):
    if not (f.endswith('.cu') or f.endswith('.cuh') or f.endswith('.h')) or f in os.listdir(fake): continue
    s=open(os.path.join(src,f)).read()
    out=''; i=0
    while True:
        j=s.find('<<<',i)
        if j<0: out+=s[i:]; break
        # kernel name: back from j over identifier/template args
        k=j; depth=0
        while True:
            c=s[k-1]
            if c=='>': depth+=1
            elif c=='<': depth-=1
            elif depth==0 and not (c.isalnum() or c in '_:'): break
            k-=1
        name=s[k:j]
        e=s.find('>>>',j)
        cfg=split_top(s[j+3:e])
        p=s.find('(',e)
        depth=0; m=p
        while True:
            if s[m]=='(': depth+=1
            elif s[m]==')':
                depth-=1
                if depth==0: break
            m+=1
        args=s[p+1:m]
        while len(cfg)<3: cfg.append('0')
        out+=s[i:k]+'emu_launch (dim3 (%s), dim3 (%s), (size_t) (%s), "%s", [&] { %s (%s); })'%(cfg[0],cfg[1],cfg[2],name.replace('"',''),name,args)
        i=m+1
    open(os.path.join(dst,f),'w').write(out)
